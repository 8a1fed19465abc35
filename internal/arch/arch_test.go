package arch

import (
	"debug/elf"
	"testing"
)

// TestTable checks that every arch's facts are filled in and distinct.
func TestTable(t *testing.T) {
	seen := map[string]string{}
	for name, f := range All {
		if f.GOARCH != name {
			t.Errorf("All[%q].GOARCH = %q", name, f.GOARCH)
		}
		for what, v := range map[string]string{"QEMU": f.QEMU, "QEMUPackage": f.QEMUPackage, "QEMUUser": f.QEMUUser, "Console": f.Console, "DebianArch": f.DebianArch, "KernelFile": f.KernelFile} {
			if v == "" {
				t.Errorf("%s: %s is empty", name, what)
			}
		}
		if g, ok := ByELF(f.ELFMachine); !ok || g.GOARCH != name {
			t.Errorf("ByELF(%v) = %q, %v; want %s", f.ELFMachine, g.GOARCH, ok, name)
		}
		if other, dup := seen[f.QEMU]; dup {
			t.Errorf("%s and %s share QEMU %s", name, other, f.QEMU)
		}
		seen[f.QEMU] = name
	}
	if _, ok := ByELF(elf.EM_RISCV); ok {
		t.Error("ByELF(EM_RISCV) found an arch")
	}
	if _, err := For("riscv64"); err == nil {
		t.Error("For(riscv64) = nil error")
	}
	if n := Names(); len(n) != 2 || n[0] != "amd64" || n[1] != "arm64" {
		t.Errorf("Names() = %v", n)
	}
}
