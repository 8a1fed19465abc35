// Package qemu starts a guest of the bundled kernel under QEMU: microvm
// on x86-64, virt on arm64, with virtio-mmio disks, an optional virtio-net
// device, and a virtio-serial port for the agent backed by a Unix socket.
//
// The accelerator is chosen from evidence, not from a probe: in auto mode
// a boot starts under the hardware accelerator (KVM, or
// Hypervisor.framework on macOS) when the host has one for the guest's
// arch, watches QEMU through its QMP socket, its stderr and the guest's
// console, and if the accelerator cannot run the guest (QEMU stops the VM
// with "KVM internal error", exits at once, or the guest prints nothing in
// time) it kills that QEMU and boots again under software emulation
// (TCG) in the same call. The verdict is remembered per process and on
// disk next to the asset cache, so later boots skip the failing attempt.
//
// Every phase of a boot has a deadline that fits the accelerator (see
// Deadlines), so a guest that stops making progress is reported in
// seconds with the cause and the last console lines.
package qemu

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
)

// AgentPortName is the virtio-serial port name the agent looks for by
// default (its -serial-port flag).
const AgentPortName = "supermachine.agent"

// Disk is a virtio-blk disk; the first is /dev/vda, the next /dev/vdb.
type Disk struct {
	Path     string
	ReadOnly bool
	Format   string // raw (default) or qcow2
}

// Config describes a guest.
type Config struct {
	Arch   string // amd64 or arm64; default runtime.GOARCH
	Kernel string // kernel image path
	// KernelSHA256 identifies the kernel for remembered accelerator
	// verdicts; empty: the file is hashed.
	KernelSHA256 string
	Initrd       string // initramfs path
	// Append is added to the kernel command line that CommandLine builds
	// for the arch and the accelerator in use.
	Append []string
	// Cmdline, if set, is the whole kernel command line, used as is under
	// any accelerator (Append is ignored).
	Cmdline   string
	MemoryMiB int // default 256
	CPUs      int // default 1
	Disks     []Disk
	// AgentSocket, if set, is the path of a Unix socket QEMU listens on,
	// connected to the guest's virtio-serial port named AgentPortName.
	AgentSocket string
	// Net adds a virtio-net device with QEMU user networking.
	Net bool
	// Console receives everything the guest prints on its serial console.
	Console io.Writer
	// Stderr receives QEMU's own messages (errors, register dumps); they
	// are also kept for error reports.
	Stderr io.Writer
	// Progress, if set, receives one-line notes on the boot: the
	// accelerator in use, a fallback and its reason, long waits.
	Progress func(msg string)
	// KVM is the accelerator policy: "auto" (default: the hardware
	// accelerator, falling back to TCG if it cannot run the guest), "on"
	// (the hardware accelerator or fail, never fall back) or "off" (TCG;
	// /dev/kvm is never touched). In auto mode SUPERMACHINE_QEMU_ACCEL
	// (kvm, hvf, tcg) forces one.
	KVM string
	// Deadlines bound the boot phases; zero fields take the defaults for
	// the accelerator in use (DefaultDeadlines).
	Deadlines Deadlines
	// StateDir holds remembered accelerator verdicts (in accel/); default
	// the asset cache directory (kernel.DefaultCacheDir).
	StateDir string
	// Binary overrides the QEMU system emulator (default from Binary).
	Binary string
	// ExtraArgs are appended to the QEMU command line.
	ExtraArgs []string
}

// ErrNoQEMU is returned (wrapped) when the QEMU binary for the arch is not
// installed.
var ErrNoQEMU = errors.New("QEMU is not installed")

// Binary returns the QEMU system emulator for arch and the Debian package
// that provides it.
func Binary(arch string) (bin, pkg string, err error) {
	switch arch {
	case "amd64":
		return "qemu-system-x86_64", "qemu-system-x86", nil
	case "arm64":
		return "qemu-system-aarch64", "qemu-system-arm", nil
	}
	return "", "", fmt.Errorf("qemu: unsupported arch %q (amd64, arm64)", arch)
}

// binary is the QEMU binary of c and the Debian package to suggest.
func (c Config) binary() (arch, bin, pkg string, err error) {
	arch = c.Arch
	if arch == "" {
		arch = runtime.GOARCH
	}
	bin, pkg, err = Binary(arch)
	if c.Binary != "" {
		bin = c.Binary
	}
	return arch, bin, pkg, err
}

// TSCKHz is the host's TSC frequency in kHz, read from /proc/cpuinfo, or 0.
// An x86 guest under software emulation needs it as tsc_early_khz=, or its
// clock runs wrong (the TSC it sees is the host's).
func TSCKHz() int {
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

// CommandLine is the kernel command line for a guest of arch: console on
// the first UART, panic and reboot end the guest (run QEMU with
// -no-reboot), and on x86-64 under software emulation (kvm false) the TSC
// frequency and the PIT as the timer tick. The VMM adds
// the virtio_mmio.device= entries (QEMU microvm does with acpi=off; on
// arm64 the devices are in the device tree). extra is appended.
func CommandLine(arch string, kvm bool, extra ...string) string {
	var p []string
	switch arch {
	case "amd64":
		p = append(p, "console=ttyS0", "reboot=t")
		if !kvm {
			if khz := TSCKHz(); khz > 0 {
				p = append(p, fmt.Sprintf("tsc_early_khz=%d", khz))
			}
			// Emulated CPUs have no TSC-deadline timer, so the kernel
			// would spend about 0.2 s calibrating the local APIC timer
			// against the PIT; use the PIT as the tick instead.
			// The emulated TSC is the host's, so it is stable; without
			// tsc=reliable the clocksource watchdog compares it with
			// late emulated timer ticks, marks it unstable about 1.5 s
			// after boot and falls back to refined-jiffies (1 ms or
			// worse resolution).
			p = append(p, "noapictimer", "tsc=reliable")
		}
	case "arm64":
		p = append(p, "console=ttyAMA0")
	}
	p = append(p, "panic=-1", "quiet")
	return strings.Join(append(p, extra...), " ")
}

// Args returns the QEMU binary and arguments for c under accel (KVM, HVF
// or TCG).
func (c Config) Args(accel string) (string, []string, error) {
	arch, bin, _, err := c.binary()
	if err != nil {
		return "", nil, err
	}
	mem, cpus := c.MemoryMiB, c.CPUs
	if mem == 0 {
		mem = 256
	}
	if cpus == 0 {
		cpus = 1
	}
	cmdline := c.Cmdline
	if cmdline == "" {
		cmdline = CommandLine(arch, accel != TCG, c.Append...)
	}
	var a []string
	switch arch {
	case "amd64":
		// microvm without ACPI: QEMU appends virtio_mmio.device= entries
		// to the command line; no PCI, no firmware tables to parse.
		a = append(a, "-M", "microvm,acpi=off")
	case "arm64":
		a = append(a, "-M", "virt")
	}
	switch accel {
	case KVM, HVF:
		a = append(a, "-accel", accel, "-cpu", "host")
	case TCG:
		a = append(a, "-accel", "tcg", "-cpu", "max")
	default:
		return "", nil, fmt.Errorf("qemu: unknown accelerator %q", accel)
	}
	a = append(a,
		"-m", strconv.Itoa(mem), "-smp", strconv.Itoa(cpus),
		"-nodefaults", "-no-user-config", "-display", "none", "-monitor", "none",
		"-no-reboot", "-serial", "stdio",
		"-kernel", c.Kernel, "-append", cmdline)
	if c.Initrd != "" {
		a = append(a, "-initrd", c.Initrd)
	}
	// QEMU virt hands out its virtio-mmio transports from the top, and
	// Linux probes them bottom up: add the disks in reverse so the first
	// is /dev/vda on arm64 as on x86-64.
	order := make([]int, len(c.Disks))
	for i := range order {
		order[i] = i
		if arch == "arm64" {
			order[i] = len(c.Disks) - 1 - i
		}
	}
	for _, i := range order {
		d := c.Disks[i]
		f := d.Format
		if f == "" {
			f = "raw"
		}
		drive := fmt.Sprintf("id=disk%d,file=%s,format=%s,if=none", i, d.Path, f)
		if d.ReadOnly {
			drive += ",readonly=on"
		}
		a = append(a, "-drive", drive, "-device", fmt.Sprintf("virtio-blk-device,drive=disk%d", i))
	}
	if c.AgentSocket != "" {
		a = append(a,
			"-device", "virtio-serial-device",
			"-chardev", "socket,id=agent,path="+c.AgentSocket+",server=on,wait=off",
			"-device", "virtserialport,chardev=agent,name="+AgentPortName)
	}
	if c.Net {
		a = append(a, "-netdev", "user,id=net0", "-device", "virtio-net-device,netdev=net0")
	}
	return bin, append(a, c.ExtraArgs...), nil
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
