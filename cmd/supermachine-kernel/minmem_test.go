package main

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/supermachine-go/supermachine-kernel/internal/qemu"
)

// The least memory the limits accept for the bundled kernel and
// initramfs is enough: the guest boots to a ready agent in it and runs a
// command, on each arch.
func TestBootAtMinimumMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("boots guests")
	}
	for _, arch := range []string{"amd64", "arm64"} {
		t.Run(arch, func(t *testing.T) {
			bin, pkg, _ := qemu.Binary(arch)
			for tool, p := range map[string]string{bin: pkg, "mksquashfs": "squashfs-tools"} {
				if _, err := exec.LookPath(tool); err != nil {
					t.Fatalf("%s not installed: apt-get install %s", tool, p)
				}
			}
			mem := strconv.Itoa(qemu.LimitsFor(arch).MinMemoryMiB)
			code, out, errs := runCLI(t, "boot", "-kvm", "off", "-arch", arch, "-mem", mem, "--", "echo", "booted")
			if code != 0 || out != "booted\n" || !strings.Contains(errs, "agent ready") {
				t.Fatalf("boot -arch %s -mem %s: exit %d, stdout %q\n%s", arch, mem, code, out, errs)
			}
		})
	}
}
