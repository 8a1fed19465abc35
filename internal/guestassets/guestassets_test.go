package guestassets

import (
	"testing"

	"github.com/supermachine-go/supermachine-kernel/internal/arch"
)

// TestEveryArch checks that the generated files give every arch of the
// table, with the table's kernel file name and decodable sources.
func TestEveryArch(t *testing.T) {
	for _, name := range arch.Names() {
		s, err := For(name)
		if err != nil {
			t.Fatal(err)
		}
		if s.Arch != name || s.KernelFile != arch.All[name].KernelFile {
			t.Errorf("%s: Arch %q, KernelFile %q; want %s, %s", name, s.Arch, s.KernelFile, name, arch.All[name].KernelFile)
		}
		for _, src := range []struct {
			what string
			xz   string
			sha  string
		}{{"kernel", s.Kernel.XZ, s.Kernel.SHA256}, {"busybox", s.Busybox.XZ, s.Busybox.SHA256}, {"agent", s.Agent.XZ, s.Agent.SHA256}} {
			if len(src.xz) < 6 || src.xz[1:6] != "7zXZ\x00" || len(src.sha) != 64 {
				t.Errorf("%s %s: not an xz stream with a digest", name, src.what)
			}
		}
	}
	if _, err := For("riscv64"); err == nil {
		t.Error("For(riscv64) = nil error")
	}
}
