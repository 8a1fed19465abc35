// Package qemu starts a guest of the bundled kernel under QEMU, in the
// machine shape of a kind of VMM (see Shape): by default microvm on
// x86-64 and virt on arm64 with virtio-mmio devices; also Firecracker's
// (an ELF vmlinux through PVH), a PCI machine (q35, virt) and Apple
// Virtualization.framework's (virtio-pci only, console on hvc0). Guests
// get virtio disks, an optional virtio-net device, and a virtio-serial
// port for the agent backed by a Unix socket. The kernel command line
// comes from kernel.CommandLine for the shape and the accelerator.
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
	"errors"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"strings"

	archfacts "github.com/supermachine-go/supermachine-kernel/internal/arch"
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
	// Shape is the kind of VMM the machine imitates; default ShapeMMIO.
	Shape Shape
	// Append is added to the kernel command line that kernel.CommandLine
	// builds for the arch, the shape and the accelerator in use.
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
	// ConsoleInput, if set, is what the guest reads from its serial
	// console (QEMU's standard input), e.g. a terminal for a rescue shell.
	ConsoleInput io.Reader
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
	// DTB, if set, is the device tree to give the guest (-dtb) on
	// ShapeVirtualization: see NoUARTDeviceTree.
	DTB string
	// Trace, if set, receives each QEMU command line (binary and
	// arguments) before it starts.
	Trace func(argv []string)
	// Shares9P are host directories the guest mounts over 9p
	// (virtio-9p) by their tags.
	Shares9P []Share9P
	// VirtioFS are host directories the guest mounts over virtio-fs
	// (mount -t virtiofs TAG DIR), each served by a vhost-user daemon
	// (virtiofsd) listening on its socket. They need the guest's memory
	// shared with the daemons, which Args arranges (a memfd backend).
	VirtioFS []VirtioFS
	// ExtraArgs are appended to the QEMU command line.
	ExtraArgs []string
}

// Share9P is a host directory QEMU's own 9p server exports to the guest,
// which mounts it with mount -t 9p TAG DIR -o trans=virtio. QEMU accesses
// the files as its own user, with no helper process and no privilege
// (security_model=none): a file the guest creates belongs to QEMU's
// user, and a chown in the guest succeeds without changing the owner.
// Files of different host file systems get distinct inode numbers
// (multidevs=remap).
type Share9P struct {
	Tag      string // mount tag, at most MaxTag9P bytes
	Path     string // host directory
	ReadOnly bool   // refuse writes on the host side
}

// VirtioFS is a virtio-fs device whose files a vhost-user daemon
// (virtiofsd) serves on Socket.
type VirtioFS struct {
	Tag    string // mount tag
	Socket string // the daemon's vhost-user socket
}

// MaxTag9P is the longest 9p mount tag QEMU takes.
const MaxTag9P = 31

// args returns the -fsdev and -device options of share i.
func (s Share9P) args(i int, dev string) []string {
	fsdev := fmt.Sprintf("local,id=fs9p%d,path=%s,security_model=none,multidevs=remap", i, OptValue(s.Path))
	if s.ReadOnly {
		fsdev += ",readonly=on"
	}
	return []string{"-fsdev", fsdev, "-device", fmt.Sprintf("%s,fsdev=fs9p%d,mount_tag=%s", dev, i, OptValue(s.Tag))}
}

// ErrNoQEMU is returned (wrapped) when the QEMU binary for the arch is not
// installed.
var ErrNoQEMU = errors.New("QEMU is not installed")

// Binary returns the QEMU system emulator for arch and the Debian package
// that provides it.
func Binary(arch string) (bin, pkg string, err error) {
	f, err := archfacts.For(arch)
	if err != nil {
		return "", "", fmt.Errorf("qemu: %w", err)
	}
	return f.QEMU, f.QEMUPackage, nil
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
		cmdline = c.cmdline(arch, accel == TCG)
	}
	machine, err := c.Shape.machine(arch)
	if err != nil {
		return "", nil, err
	}
	if err := c.checkKernel(arch); err != nil {
		return "", nil, err
	}
	if err := c.checkPaths(); err != nil {
		return "", nil, err
	}
	if len(cmdline) >= maxCmdline {
		return "", nil, fmt.Errorf("qemu: the kernel command line is %d bytes; the guest kernel takes at most %d (COMMAND_LINE_SIZE)", len(cmdline), maxCmdline-1)
	}
	if len(c.VirtioFS) > 0 {
		// vhost-user daemons map the guest's memory: it must be a
		// shareable file, not QEMU's anonymous memory.
		machine += ",memory-backend=mem"
	}
	a := []string{"-M", machine}
	switch accel {
	case KVM, HVF:
		a = append(a, "-accel", accel, "-cpu", "host")
	case TCG:
		if arch == "arm64" {
			// User space may sign return addresses with pointer
			// authentication (the kernel's own code does not), and
			// QEMU's default algorithm for it (QARMA5) is slow to
			// emulate; its implementation-defined one is cheap. KVM and
			// HVF guests use the CPU's own. No SVE: emulating it costs
			// about a tenth of an arm64 boot (the kernel saves and sizes
			// the vector state), an emulation cost only; ExtraArgs
			// "-cpu", "max,pauth-impdef=on" asks for it back.
			a = append(a, "-accel", "tcg", "-cpu", "max,pauth-impdef=on,sve=off")
			break
		}
		if cpus > 1 {
			// One host thread runs every vCPU. With a thread per vCPU,
			// QEMU can go on running the old translation of code another
			// vCPU has just rewritten, and the x86-64 kernel rewrites its
			// own code live (static keys, alternatives): it then hits an
			// int3 the patcher has already removed and panics ("Oops:
			// int3", "Fatal exception in interrupt"): 1 boot in 80 of two
			// vCPUs here. The arm64 kernel rewrites code either with
			// every other CPU stopped or only where running the old
			// instruction is harmless, so it keeps a thread per vCPU.
			a = append(a, "-accel", "tcg,thread=single", "-cpu", "max")
			break
		}
		a = append(a, "-accel", "tcg", "-cpu", "max")
	default:
		return "", nil, fmt.Errorf("qemu: unknown accelerator %q", accel)
	}
	a = append(a,
		"-m", strconv.Itoa(mem), "-smp", strconv.Itoa(cpus),
		"-nodefaults", "-no-user-config", "-display", "none", "-monitor", "none",
		"-no-reboot")
	if len(c.VirtioFS) > 0 {
		a = append(a, "-object", fmt.Sprintf("memory-backend-memfd,id=mem,size=%dM,share=on", mem))
	}
	a = append(a, c.consoleArgs()...)
	a = append(a, "-kernel", c.Kernel, "-append", cmdline)
	if c.Initrd != "" {
		a = append(a, "-initrd", c.Initrd)
	}
	a = append(a, c.deviceArgs(arch)...)
	return bin, append(a, c.ExtraArgs...), nil
}

// OptValue escapes s for use as a value inside a QEMU option that QEMU
// splits at commas (-drive, -chardev, -qmp, -object, -fsdev, -device,
// -M …: key=value,key=value): QEMU reads ",," as one comma in a value.
// Options QEMU does not split (-kernel, -initrd, -dtb, -append) take
// their value as it is.
func OptValue(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// maxCmdline is the size of the guest kernel's command line buffer
// (COMMAND_LINE_SIZE, 2048 on x86-64 and arm64), its final NUL included.
const maxCmdline = 2048

// MaxSocketPath is the longest Unix socket path: sockaddr_un's sun_path
// holds 108 bytes on Linux and 104 on macOS and the BSDs, its final NUL
// included.
var MaxSocketPath = map[bool]int{true: 107, false: 103}[runtime.GOOS == "linux"]

// checkSocketPath refuses a Unix socket path the kernel cannot bind.
func checkSocketPath(what, path string) error {
	if len(path) > MaxSocketPath {
		return fmt.Errorf("qemu: %s %s is %d bytes long; a Unix socket path takes at most %d: use a shorter directory", what, path, len(path), MaxSocketPath)
	}
	return nil
}

// checkPaths refuses the paths of c that QEMU cannot take whatever the
// escaping: empty ones, and socket paths too long to bind.
func (c Config) checkPaths() error {
	if c.Kernel == "" {
		return errors.New("qemu: no kernel image")
	}
	for i, d := range c.Disks {
		if d.Path == "" {
			return fmt.Errorf("qemu: disk %d has no path", i)
		}
	}
	for i, v := range c.VirtioFS {
		if v.Tag == "" {
			return fmt.Errorf("qemu: virtio-fs device %d has no tag", i)
		}
		if err := checkSocketPath("virtio-fs socket", v.Socket); err != nil {
			return err
		}
	}
	for i, s := range c.Shares9P {
		switch {
		case s.Path == "":
			return fmt.Errorf("qemu: 9p share %d has no path", i)
		case s.Tag == "" || len(s.Tag) > MaxTag9P:
			return fmt.Errorf("qemu: 9p share %s: tag %q: want 1 to %d bytes", s.Path, s.Tag, MaxTag9P)
		}
	}
	if c.AgentSocket != "" {
		return checkSocketPath("the agent socket", c.AgentSocket)
	}
	return nil
}
