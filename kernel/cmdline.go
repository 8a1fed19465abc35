package kernel

import (
	"fmt"
	"strings"
)

// CommandLine returns the kernel command line to boot the bundled kernel
// with, followed by extra:
//
//	amd64: console=ttyS0 reboot=t panic=-1
//	arm64: console=ttyAMA0 panic=-1
//
// The console is the first UART (8250 on x86-64, PL011 on QEMU virt). A
// panic reboots at once, and reboot=t (a triple fault) works on every
// x86-64 VMM, with or without ACPI, so a guest that fails or powers off
// without ACPI ends its VM (run QEMU with -no-reboot).
//
// Devices: the kernel has no PCI and no ACPI. On arm64 the VMM describes
// virtio-mmio devices in the device tree. On x86-64 QEMU microvm (with
// acpi=off) and Firecracker append virtio_mmio.device= entries themselves;
// a VMM that does not can add them with VirtioMMIODevice.
//
// Under software emulation on x86-64 (no KVM), add tsc_early_khz=<host TSC
// kHz> (the guest sees the host's TSC) and noapictimer (emulated CPUs lack
// the TSC-deadline timer; calibrating the APIC timer costs about 0.2 s).
// The agent initramfs reads supermachine.* parameters; see the initramfs
// and agent packages.
func CommandLine(extra ...string) string {
	base := []string{"console=ttyS0", "reboot=t", "panic=-1"}
	if Arch == "arm64" {
		base = []string{"console=ttyAMA0", "panic=-1"}
	}
	return strings.Join(append(base, extra...), " ")
}

// VirtioMMIODevice returns the virtio_mmio.device= parameter that
// describes a virtio-mmio device of size bytes at physical address base
// with interrupt irq, e.g. virtio_mmio.device=0x1000@0xd0000000:5.
func VirtioMMIODevice(size, base uint64, irq int) string {
	return fmt.Sprintf("virtio_mmio.device=%#x@%#x:%d", size, base, irq)
}
