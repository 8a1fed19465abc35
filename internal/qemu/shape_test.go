package qemu

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// argsOf returns the QEMU arguments of c under software emulation.
func argsOf(t *testing.T, c Config) []string {
	t.Helper()
	_, a, err := c.Args(TCG)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// kernelFile writes content to a file named name in a temporary
// directory, for the checks Args makes of the kernel it is given.
func kernelFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// after returns the argument that follows flag in a, or "".
func after(a []string, flag string) string {
	if i := slices.Index(a, flag); i >= 0 && i+1 < len(a) {
		return a[i+1]
	}
	return ""
}

// TestShapeArgs checks the machine, the devices and the kernel command
// line each shape gives QEMU: the boot tests prove the guest works on
// them, this proves each shape is the machine it claims to be.
func TestShapeArgs(t *testing.T) {
	elfKernel := kernelFile(t, "vmlinux", "\x7fELF\x02\x01\x01")
	base := Config{Kernel: elfKernel, Disks: []Disk{{Path: "root.img", ReadOnly: true}, {Path: "data.img"}},
		AgentSocket: "/tmp/a.sock", Net: true, Append: []string{"x=1"}}
	for _, c := range []struct {
		arch    string
		shape   Shape
		machine string
		has     []string // arguments that must be there
		hasNot  []string // substrings no argument may contain
		cmdline string   // prefix of -append (before quiet and x=1)
	}{
		{"amd64", ShapeMMIO, "microvm,acpi=off",
			[]string{"stdio", "virtio-blk-device,drive=disk0", "virtio-serial-device,id=vsera", "virtio-net-device,netdev=net0"},
			[]string{"-pci"}, "console=ttyS0 reboot=t"},
		{"amd64", ShapeFirecracker, "microvm,acpi=off,rtc=off",
			[]string{"virtio-blk-device,drive=disk0"}, []string{"-pci"}, "console=ttyS0 reboot=t"},
		{"amd64", ShapePCI, "q35",
			[]string{"virtio-blk-pci,disable-legacy=on,drive=disk0", "virtio-serial-pci,disable-legacy=on,id=vsera", "virtio-net-pci,disable-legacy=on,netdev=net0"},
			[]string{"-device,"}, "console=ttyS0 reboot=t"},
		{"arm64", ShapeMMIO, "virt",
			[]string{"virtio-blk-device,drive=disk1", "virtio-serial-device,id=vsera"}, []string{"-pci"}, "console=ttyAMA0 panic=-1"},
		{"arm64", ShapePCI, "virt",
			[]string{"virtio-blk-pci,disable-legacy=on,drive=disk0", "virtio-net-pci,disable-legacy=on,netdev=net0"},
			[]string{"-device,"}, "console=ttyAMA0 panic=-1"},
		{"arm64", ShapeVirtualization, "virt",
			[]string{"none", "virtconsole,bus=vser0.0,nr=0,chardev=console", "virtserialport,bus=vser0.0,chardev=agent,name=" + AgentPortName + ",id=" + agentPortID,
				"virtio-blk-pci,disable-legacy=on,drive=disk0"},
			[]string{"-device,", "pl011"}, "console=hvc0 panic=-1"},
	} {
		t.Run(c.arch+"/"+c.shape.String(), func(t *testing.T) {
			cfg := base
			cfg.Arch, cfg.Shape = c.arch, c.shape
			a := argsOf(t, cfg)
			if m := after(a, "-M"); m != c.machine {
				t.Errorf("-M %s, want %s", m, c.machine)
			}
			for _, h := range c.has {
				if !slices.Contains(a, h) {
					t.Errorf("no argument %q in %q", h, a)
				}
			}
			for _, h := range c.hasNot {
				for _, x := range a {
					if strings.Contains(x, h) {
						t.Errorf("argument %q contains %q", x, h)
					}
				}
			}
			// No UART on Virtualization.framework: the console is hvc0.
			if s, want := after(a, "-serial"), map[bool]string{true: "none", false: "stdio"}[c.shape == ShapeVirtualization]; s != want {
				t.Errorf("-serial %s, want %s", s, want)
			}
			// The first disk must come first on PCI and amd64, last
			// on arm64 MMIO (virt probes its transports top down).
			// (Relative disk paths are made absolute.)
			wd, _ := os.Getwd()
			d0, d1 := slices.Index(a, "id=disk0,file="+wd+"/root.img,format=raw,if=none,readonly=on"), slices.Index(a, "id=disk1,file="+wd+"/data.img,format=raw,if=none")
			if d0 < 0 || d1 < 0 || (d0 < d1) != (c.arch == "amd64" || c.shape.pci()) {
				t.Errorf("disk order %d %d wrong for %s/%s", d0, d1, c.arch, c.shape)
			}
			cl := after(a, "-append")
			// microvm has no ACPI tables and no PCI: the kernel is told.
			suffix := " quiet dummy.numdummies=0 x=1"
			if c.arch == "amd64" && !c.shape.pci() {
				suffix = " quiet dummy.numdummies=0 acpi=off pci=off x=1"
			}
			if !strings.HasPrefix(cl, c.cmdline) || !strings.HasSuffix(cl, suffix) {
				t.Errorf("-append %q, want %q...%s", cl, c.cmdline, suffix)
			}
			if c.arch == "amd64" && !strings.Contains(cl, " noapictimer ") {
				t.Errorf("-append %q: emulated amd64 lacks noapictimer", cl)
			}
			if c.arch == "amd64" && !strings.Contains(cl, " no_timer_check ") {
				t.Errorf("-append %q: amd64 lacks no_timer_check", cl)
			}
		})
	}
}

func TestShapeErrors(t *testing.T) {
	bz := kernelFile(t, "bzImage", "MZ not an ELF")
	if _, _, err := (Config{Arch: "amd64", Shape: ShapeFirecracker, Kernel: bz}).Args(TCG); err == nil || !strings.Contains(err.Error(), "not an ELF") {
		t.Errorf("Firecracker shape with a bzImage: %v", err)
	}
	if _, _, err := (Config{Arch: "amd64", Shape: ShapeVirtualization, Kernel: bz}).Args(TCG); err == nil || !strings.Contains(err.Error(), "arm64 only") {
		t.Errorf("Virtualization.framework shape on amd64: %v", err)
	}
	if _, _, err := (Config{Arch: "amd64", Shape: Shape(7), Kernel: bz}).Args(TCG); err == nil {
		t.Error("unknown shape accepted")
	}
	for _, s := range Shapes {
		if got, err := ParseShape(s.String()); err != nil || got != s {
			t.Errorf("ParseShape(%q) = %v, %v", s, got, err)
		}
	}
	if _, err := ParseShape("hyperv"); err == nil || !strings.Contains(err.Error(), "firecracker") {
		t.Errorf("ParseShape(hyperv): %v", err)
	}
}

// TestNoUARTDeviceTree makes the Virtualization.framework shape's device
// tree: QEMU virt's, with the PL011 and the console path to it removed,
// the PCI host bridge kept.
func TestNoUARTDeviceTree(t *testing.T) {
	for _, tool := range []string{"qemu-system-aarch64", "fdtput"} {
		if _, err := exec.LookPath(tool); err != nil {
			if testing.Short() {
				t.Skipf("%s not installed", tool)
			}
			t.Fatalf("%s not installed (Debian packages qemu-system-arm, device-tree-compiler)", tool)
		}
	}
	dir := t.TempDir()
	c := Config{Arch: "arm64", Shape: ShapeVirtualization, Kernel: "/dev/null", KVM: "off",
		AgentSocket: filepath.Join(dir, "a.sock"), Disks: []Disk{{Path: "/dev/null", ReadOnly: true}}}
	dtb := filepath.Join(dir, "virt.dtb")
	if err := NoUARTDeviceTree(context.Background(), c, dtb); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(dtb)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte{0xd0, 0x0d, 0xfe, 0xed}) {
		t.Fatalf("%s is not a flattened device tree", dtb)
	}
	if bytes.Contains(b, []byte("pl011")) {
		t.Error("the device tree still has a pl011 node")
	}
	// The property's name may stay in the strings table; the property
	// must be gone.
	if out, err := exec.Command("fdtget", dtb, "/chosen", "stdout-path").CombinedOutput(); err == nil {
		t.Errorf("/chosen/stdout-path is still set: %s", out)
	}
	if !bytes.Contains(b, []byte("pci-host-ecam-generic")) {
		t.Error("the device tree lost the PCI host bridge")
	}
	c.DTB = dtb
	if a := argsOf(t, c); after(a, "-dtb") != dtb {
		t.Errorf("-dtb %q, want %s", after(a, "-dtb"), dtb)
	}
	if err := NoUARTDeviceTree(context.Background(), Config{Arch: "amd64"}, dtb); err == nil {
		t.Error("NoUARTDeviceTree on amd64 did not fail")
	}
}

// Under software emulation an x86-64 guest of more than one vCPU runs
// them on one host thread (QEMU's threaded TCG can run the old
// translation of code the guest kernel rewrites live); one vCPU, an
// arm64 guest and the hardware accelerators keep QEMU's default.
func TestTCGThreading(t *testing.T) {
	bz := kernelFile(t, "bzImage", "x")
	for _, tc := range []struct {
		arch  string
		cpus  int
		accel string
		want  string
	}{
		{"amd64", 2, TCG, "tcg,thread=single"},
		{"amd64", 8, TCG, "tcg,thread=single"},
		{"amd64", 1, TCG, "tcg"},
		{"amd64", 0, TCG, "tcg"},
		{"arm64", 2, TCG, "tcg"},
		{"amd64", 2, KVM, "kvm"},
	} {
		_, a, err := Config{Arch: tc.arch, CPUs: tc.cpus, Kernel: bz}.Args(tc.accel)
		if err != nil {
			t.Fatal(err)
		}
		if got := after(a, "-accel"); got != tc.want {
			t.Errorf("%s, %d vCPUs, %s: -accel %q, want %q", tc.arch, tc.cpus, tc.accel, got, tc.want)
		}
	}
}
