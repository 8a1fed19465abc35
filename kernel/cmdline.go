package kernel

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	archfacts "github.com/supermachine-go/supermachine-kernel/internal/arch"
)

// A Shape is the kind of machine a VMM gives the guest, as far as the
// kernel command line is concerned: how devices are found and where the
// console is.
type Shape int

const (
	// ShapeMMIO: virtio-mmio devices and a UART console. QEMU microvm
	// (with acpi=off QEMU appends the virtio_mmio.device= entries itself)
	// and QEMU virt (devices in the device tree), Firecracker (it appends
	// the entries too). The default.
	ShapeMMIO Shape = iota
	// ShapePCI: virtio-pci devices and a UART console. Cloud Hypervisor,
	// QEMU q35 or virt with virtio-*-pci devices, crosvm.
	ShapePCI
	// ShapeVirtioConsole: virtio-pci devices and no UART: the console is
	// the first virtio console port, hvc0. Apple Virtualization.framework
	// and the VMMs built like it (libkrun-style HVF VMMs).
	ShapeVirtioConsole
)

// String returns the shape's name: "mmio", "pci" or "virtio-console".
func (s Shape) String() string {
	switch s {
	case ShapeMMIO:
		return "mmio"
	case ShapePCI:
		return "pci"
	case ShapeVirtioConsole:
		return "virtio-console"
	}
	return "Shape(" + strconv.Itoa(int(s)) + ")"
}

// CommandLineOptions say what the guest runs on. The zero value is this
// build's arch on an MMIO VMM with hardware virtualization.
type CommandLineOptions struct {
	// Arch is the guest's arch, "amd64" or "arm64"; empty means Arch.
	// A host may boot either arch's kernel, so this need not be Arch.
	Arch string

	// Shape is the kind of VMM; see Shape.
	Shape Shape

	// Console overrides the shape's console device (ttyS0 on amd64,
	// ttyAMA0 on arm64, hvc0 for ShapeVirtioConsole). Firecracker on
	// arm64 emulates a 16550 UART, not a PL011: use "ttyS0" there.
	Console string

	// Emulated says the guest runs under software emulation (QEMU TCG),
	// not KVM or HVF. On x86-64 it adds tsc_early_khz=<TSCKHz> (the
	// guest sees the host's TSC; the kernel's calibration of it under
	// emulation is slow and wrong), noapictimer (emulated CPUs have no
	// TSC-deadline timer, and calibrating the local APIC timer costs
	// about 0.2 s: the kernel uses the PIT as its tick instead) and
	// tsc=reliable (the emulated TSC is the host's, so it is stable;
	// without it the clocksource watchdog compares it with late emulated
	// timer ticks, marks it unstable about 1.5 s after boot and falls
	// back to refined-jiffies, of 1 ms resolution or worse).
	Emulated bool

	// TSCKHz is the host's TSC frequency in kHz for Emulated x86-64
	// guests; 0 reads it from /proc/cpuinfo ("cpu MHz"), and if that is
	// unknown tsc_early_khz is left out.
	TSCKHz int

	// Verbose leaves out quiet, so the kernel prints its whole boot log
	// on the console. By default it prints only warnings and errors: at
	// the default log level a boot prints several hundred lines, which
	// cost 0.1-0.25 s on an emulated UART.
	Verbose bool
}

// CommandLine returns the kernel command line to boot the bundled kernel
// with on the machine o describes, followed by extra. The zero options
// give, on amd64 and arm64:
//
//	console=ttyS0 reboot=t no_timer_check panic=-1 quiet dummy.numdummies=0
//	console=ttyAMA0 panic=-1 quiet dummy.numdummies=0
//
// The console is the first UART (8250 on x86-64, PL011 on QEMU virt), or
// hvc0 on ShapeVirtioConsole. A panic reboots at once, and reboot=t (a
// triple fault) works on every x86-64 VMM, with or without ACPI, so a
// guest that fails or powers off without ACPI ends its VM (run QEMU with
// -no-reboot). On x86-64, no_timer_check skips the boot-time test that
// the PIT's interrupt reaches the CPU through the IO-APIC: the test
// counts timer ticks in a window of about 60 ms of TSC time, and a vCPU
// or an emulator thread that the host does not schedule for that long
// fails it three times over and panics ("IO-APIC + timer doesn't work!").
// The kernel skips the test itself when it finds KVM or Hyper-V; the word
// is for guests that see no hypervisor signature: QEMU's software
// emulation and Hypervisor.framework. The kernel prints only warnings and
// errors unless o.Verbose, and dummy.numdummies=0 spares the boot the
// dummy0 interface the built-in dummy driver would otherwise create (ip
// link add still makes them). The words in extra come last, so they win: loglevel=7 or
// dummy.numdummies=1 there undo the defaults.
//
// Devices: on ShapeMMIO the VMM describes virtio-mmio devices, in the
// device tree on arm64; on x86-64 QEMU microvm (with acpi=off) and
// Firecracker append virtio_mmio.device= entries themselves, and a VMM
// that does not can add them with VirtioMMIODevice. On ShapePCI and
// ShapeVirtioConsole the kernel enumerates the PCI bus (virtio-pci,
// MSI-X; on arm64 the generic ECAM host bridge from the device tree).
//
// The agent initramfs reads supermachine.* parameters; see the initramfs
// and agent packages.
func CommandLine(o CommandLineOptions, extra ...string) string {
	arch := o.Arch
	if arch == "" {
		arch = Arch
	}
	console := o.Console
	switch {
	case console != "":
	case o.Shape == ShapeVirtioConsole:
		console = "hvc0"
	case archfacts.All[arch].Console != "":
		console = archfacts.All[arch].Console
	default:
		console = "ttyS0"
	}
	p := []string{"console=" + console}
	if arch == "amd64" {
		p = append(p, "reboot=t", "no_timer_check")
		if o.Emulated {
			khz := o.TSCKHz
			if khz == 0 {
				khz = hostTSCKHz()
			}
			if khz > 0 {
				p = append(p, fmt.Sprintf("tsc_early_khz=%d", khz))
			}
			p = append(p, "noapictimer", "tsc=reliable")
		}
	}
	p = append(p, "panic=-1")
	if !o.Verbose {
		p = append(p, "quiet")
	}
	p = append(p, "dummy.numdummies=0")
	return strings.Join(append(p, extra...), " ")
}

// hostTSCKHz is the host's TSC frequency in kHz as /proc/cpuinfo says
// ("cpu MHz" of the first CPU), or 0.
func hostTSCKHz() int {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if ok && strings.TrimSpace(k) == "cpu MHz" {
			mhz, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return int(mhz * 1000)
			}
		}
	}
	return 0
}

// VirtioMMIODevice returns the virtio_mmio.device= parameter that
// describes a virtio-mmio device of size bytes at physical address base
// with interrupt irq, e.g. virtio_mmio.device=0x1000@0xd0000000:5.
func VirtioMMIODevice(size, base uint64, irq int) string {
	return fmt.Sprintf("virtio_mmio.device=%#x@%#x:%d", size, base, irq)
}
