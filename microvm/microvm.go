// Package microvm boots a microVM of the bundled Linux kernel from Go and
// returns a handle to run commands in it, in one call:
//
//	vm, err := microvm.Start(ctx, microvm.Config{})
//	if err != nil { … }
//	defer vm.Close()
//	out, err := vm.Command(ctx, "uname", "-a").Output()
//
// A Config describes the machine (arch, memory, CPUs, machine shape,
// accelerator policy), the kernel (the bundled one by default), the root
// filesystem (a tiny busybox root by default, or a squashfs or ext4
// image, or a host directory, packed as squashfs or shared as it is),
// the initramfs settings of the agent init, extra disks, host
// directories shared with the guest (read-only or writable), the
// network, and where the guest console and the VMM's messages go. Every
// field is checked before anything starts; a bad one gives an error that
// names it.
//
// Start boots under the hardware accelerator when the host has one and
// falls back to software emulation (TCG) in the same call if the
// accelerator cannot run the guest; the verdict is remembered next to the
// asset cache, so later boots skip the failing attempt. Boot failures are
// *BootError values that say the phase, the accelerator, the reason and
// the guest's last console lines, and match ErrAccel, ErrExited,
// ErrStopped or ErrStalled with errors.Is.
//
// The VM's handle gives the agent client (Command returns an agent.Cmd,
// shaped like os/exec's Cmd; Client gives files, clock and power), Wait,
// Close (power off, then kill after a grace period) and Kill. Ending the
// context given to Start ends the VM. Nothing outlives the handle: the
// VMM process dies with the VM (and with this process, on Linux), and its
// sockets and temporary directory are removed once it has exited.
//
// # Sharing host directories
//
// Shares, and Root with ShareRoot, reach the guest over virtio 9p
// (Sharing9P, the default: QEMU serves the files itself, as this
// process's user, with no privilege) or virtio-fs (SharingVirtioFS: one
// virtiofsd per share; file handles work and owners are kept; it needs
// root on a Linux host). The host enforces a read-only share: 9p through
// QEMU's read-only export, virtio-fs through a read-only view of the
// directory in a mount namespace of its own, which virtiofsd then
// serves. The guest mounts the shares from a per-boot initramfs
// segment, so that any path works and the cached initramfs stays one.
//
// # The helper process
//
// The read-only view of a virtio-fs share is made by a helper process:
// Start runs this program's own executable (os.Executable) again with
// the environment variable HelperEnv set; this package's init function
// sees it, unshares a mount namespace, binds the directory read-only and
// execs virtiofsd, so the helper never reaches the program's main and
// no setup is needed. Init functions that Go runs before this package's
// run in the helper too, so they should have no side effects. The
// helper, like virtiofsd and QEMU, dies with the VM and with this
// process.
//
// # Arches
//
// A program links the guest assets of its own arch (through the kernel
// package) and boots that arch by default. To boot the other arch too,
// import microvm/allarch, which links and registers both.
//
// # The engine seam
//
// QEMU is the engine: it is the VMM this package drives, with machine
// shapes that imitate Firecracker, Cloud Hypervisor and Apple's
// Virtualization.framework. The package talks to it through one
// unexported interface, engine, whose boot method takes an
// engine-neutral machine description (kernel and initramfs paths, kernel
// command-line words, memory, CPUs, disks, shares by tag and their
// transport, network, the agent's Unix socket path, writers and
// deadlines) and returns a running instance (accelerator used, fallback
// reason, start time, exit, kill) with a connected agent client. The
// virtiofsd daemons are vhost-user back ends that Cloud Hypervisor takes
// as QEMU does. Another VMM (Firecracker, Cloud Hypervisor) is added by
// implementing that interface; Config, VM and the errors do not change.
package microvm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/supermachine-go/supermachine-kernel/agent"
	"github.com/supermachine-go/supermachine-kernel/initramfs"
	"github.com/supermachine-go/supermachine-kernel/internal/bootfiles"
	"github.com/supermachine-go/supermachine-kernel/internal/lifetime"
	"github.com/supermachine-go/supermachine-kernel/internal/qemu"
	"github.com/supermachine-go/supermachine-kernel/internal/rootfs"
)

// Accel is the accelerator policy.
type Accel string

const (
	// AccelAuto (the default) boots under the hardware accelerator (KVM,
	// or Hypervisor.framework on macOS) when the host has one for the
	// guest's arch, and falls back to software emulation if it cannot
	// run the guest. SUPERMACHINE_QEMU_ACCEL (kvm, hvf, tcg) forces one.
	AccelAuto Accel = "auto"
	// AccelOn uses the hardware accelerator or fails; it never falls
	// back.
	AccelOn Accel = "on"
	// AccelOff uses software emulation (TCG); /dev/kvm is never touched.
	AccelOff Accel = "off"
)

// Shape is the machine the guest is given: one per kind of VMM the
// bundled kernel targets.
type Shape = qemu.Shape

// The machine shapes; see each constant's documentation in the engine.
const (
	// ShapeMMIO (the default): microvm on amd64, virt on arm64, with
	// virtio-mmio devices.
	ShapeMMIO = qemu.ShapeMMIO
	// ShapeFirecracker is Firecracker's machine (amd64: the ELF vmlinux
	// through PVH).
	ShapeFirecracker = qemu.ShapeFirecracker
	// ShapePCI is a PCI machine (q35 or virt) with virtio-pci devices,
	// as Cloud Hypervisor gives.
	ShapePCI = qemu.ShapePCI
	// ShapeVirtualization is Apple Virtualization.framework's machine
	// (arm64 only): virtio-pci devices, the console on hvc0. It needs
	// a DTB without the UART (Config.DTB), made by Start when empty.
	ShapeVirtualization = qemu.ShapeVirtualization
)

// ParseShape parses a shape's name: mmio, firecracker, pci or
// virtualization-framework.
func ParseShape(s string) (Shape, error) { return qemu.ParseShape(s) }

// Deadlines bound the phases of a boot (start of the VMM, the guest's
// first console output, its silence before the agent answers); zero
// fields take defaults that fit the accelerator in use.
type Deadlines = qemu.Deadlines

// Disk is an extra virtio-blk disk. The root image is /dev/vda; extra
// disks follow as /dev/vdb, /dev/vdc, ….
type Disk struct {
	Path     string
	ReadOnly bool
	Format   string // raw (default) or qcow2
}

// Share is a host directory shown in the guest at GuestPath, over
// Config.Sharing. It is read-only unless Writable, and the host enforces
// it.
type Share struct {
	HostDir   string // an existing directory
	GuestPath string // absolute; created over the root if missing
	Writable  bool
}

// Config describes a microVM. The zero value boots the host's arch with
// the bundled kernel, 256 MiB, one CPU and the busybox root.
type Config struct {
	// Arch is the guest's arch, amd64 or arm64; default the host's.
	// Another arch than the host's needs microvm/allarch imported.
	Arch string
	// MemoryMiB is the guest's memory; default 256.
	MemoryMiB int
	// CPUs is the number of virtual CPUs; default 1. Under software
	// emulation the vCPUs of an amd64 guest share one host thread: QEMU's
	// thread per vCPU can run stale code after the guest kernel rewrites
	// its own, and the guest panics (see the README's Accelerators).
	CPUs int
	// Shape is the machine shape; default ShapeMMIO.
	Shape Shape
	// Accel is the accelerator policy; default AccelAuto.
	Accel Accel
	// Kernel is the path of a kernel image to boot instead of the
	// bundled one (which matches the agent initramfs; another kernel
	// needs its drivers built in).
	Kernel string
	// Append are extra kernel command-line words.
	Append []string
	// Root is the root filesystem: empty for the bundled busybox root,
	// the path of a squashfs or ext4 image (or block device), or a host
	// directory, packed into a temporary squashfs image at Start (which
	// needs mksquashfs) unless ShareRoot. The root is read-only under a
	// writable overlay (see Initramfs).
	Root string
	// ShareRoot shows Root, a host directory, to the guest as it is,
	// over Sharing, instead of packing it into an image: nothing to
	// pack, and the guest sees the host's changes. The host side is
	// read-only; the guest's writes go to the overlay.
	ShareRoot bool
	// Initramfs are the settings of the agent init: extra mounts, agent
	// arguments, the overlay's tmpfs size or an upper device, rescue.
	// Root (the root image's device, default /dev/vda) and RootFSType
	// (default: detected from Config.Root) are rarely needed.
	Initramfs initramfs.Settings
	// Disks are extra disks, after the root.
	Disks []Disk
	// Shares are host directories shown in the guest.
	Shares []Share
	// Sharing is how Shares and a shared Root reach the guest; default
	// Sharing9P.
	Sharing Sharing
	// Net adds a network device with user-mode networking (NAT).
	Net bool
	// DTB is a device tree to give the guest (ShapeVirtualization).
	DTB string
	// Console receives everything the guest prints on its console.
	Console io.Writer
	// ConsoleInput, if set, is what the guest reads on its console, e.g.
	// a terminal for the init's rescue shell (Initramfs.Rescue).
	ConsoleInput io.Reader
	// QEMUOutput receives the VMM's own messages.
	QEMUOutput io.Writer
	// VMMCommand, if set, receives each VMM command line (binary and
	// arguments) before it starts.
	VMMCommand func(argv []string)
	// Progress, if set, receives one-line notes on the boot: the
	// accelerator in use, a fallback and why, long waits.
	Progress func(msg string)
	// Deadlines bound the boot's phases; zero fields take the defaults.
	Deadlines Deadlines
}

// Boot failures, matched with errors.Is on a *BootError.
var (
	// ErrAccel: the hardware accelerator cannot run the guest here.
	ErrAccel = qemu.ErrAccel
	// ErrExited: the VMM exited before the boot finished.
	ErrExited = qemu.ErrExited
	// ErrStopped: the VMM stopped the VM (internal error, guest panic).
	ErrStopped = qemu.ErrStopped
	// ErrStalled: a boot phase ran over its deadline.
	ErrStalled = qemu.ErrStalled
	// ErrNoVMM: the VMM (QEMU for the guest's arch) is not installed.
	ErrNoVMM = qemu.ErrNoQEMU
	// ErrBadConfig: a Config field is invalid; the error is a
	// *ConfigError that names it.
	ErrBadConfig = errors.New("microvm: bad Config")
)

// ConfigError is a Config field that Start refused before anything
// started. It matches ErrBadConfig.
type ConfigError struct {
	Field string // e.g. "MemoryMiB", "Shares[1]"
	Err   error
}

func (e *ConfigError) Error() string { return "microvm: Config." + e.Field + ": " + e.Err.Error() }

// Unwrap gives ErrBadConfig and the underlying error.
func (e *ConfigError) Unwrap() []error { return []error{ErrBadConfig, e.Err} }

// BootError is a failed boot: the phase, the accelerator, what happened
// and the guest's last console lines. Use errors.As to get it.
type BootError = qemu.BootError

// VM is a running microVM.
type VM struct {
	inst   instance
	client *agent.Client
	dir    string
	ready  time.Duration
	arch   string
	done   chan struct{} // closed once the VMM has exited and the VM's files are gone

	closeOnce sync.Once
}

// Start validates c, prepares the boot files and boots the VM, returning
// once its agent answers. The VM ends when ctx ends, when the guest
// powers off, or on Close or Kill.
func Start(ctx context.Context, c Config) (*VM, error) {
	c, err := c.normalize()
	if err != nil {
		return nil, err
	}
	return start(ctx, c, qemuEngine{})
}

func start(ctx context.Context, c Config, eng engine) (vm *VM, err error) {
	sweepOnceBestEffort()
	assets, err := bootfiles.For(c.Arch)
	if err != nil {
		return nil, &ConfigError{Field: "Arch", Err: err}
	}
	dir, err := lifetime.MkdirTemp("microvm")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			lifetime.RemoveTemp(dir)
		}
	}()
	sock := filepath.Join(dir, "agent.sock")
	sockets := []string{sock}
	if c.Sharing == SharingVirtioFS {
		// The longest of the daemons' sockets.
		sockets = append(sockets, virtiofsdSocket(dir, shareTag(len(c.Shares))))
	}
	for _, p := range sockets {
		if len(p) > qemu.MaxSocketPath {
			return nil, fmt.Errorf("microvm: TMPDIR %s is too long for the Unix socket %s (at most %d bytes): set TMPDIR to a shorter directory", os.TempDir(), p, qemu.MaxSocketPath)
		}
	}
	m := machine{
		arch: c.Arch, shape: c.Shape, accel: c.Accel, memoryMiB: c.MemoryMiB, cpus: c.CPUs,
		append: c.Append, net: c.Net, dtb: c.DTB, console: c.Console, vmmOutput: c.QEMUOutput,
		progress: c.Progress, deadlines: c.Deadlines, consoleInput: c.ConsoleInput, trace: c.VMMCommand, agentSocket: sock, dir: dir,
		sharing: c.Sharing,
	}
	progress := func(format string, a ...any) {
		if c.Progress != nil {
			c.Progress(fmt.Sprintf(format, a...))
		}
	}
	progress("preparing the kernel, initramfs and root image")
	if c.Kernel != "" {
		m.kernel = c.Kernel
	} else if m.kernel, m.kernelSHA256, err = assets.Kernel(ctx, c.Shape == ShapeFirecracker); err != nil {
		return nil, err
	}
	o := initramfs.Options{Settings: c.Initramfs}
	if c.ShareRoot {
		m.shares = append(m.shares, hostShare{tag: rootShareTag, hostDir: c.Root})
		o.Root, o.RootFSType = rootShareTag, c.Sharing.fsType()
		if c.Sharing == Sharing9P {
			// The kernel's defaults (128 KiB messages) read a file 2 to
			// 3 times slower than the shares' options.
			o.RootOptions = share9POptions
		}
	} else {
		root, fsType, err := prepareRoot(ctx, c.Root, dir, assets)
		if err != nil {
			return nil, err
		}
		m.disks = append(m.disks, Disk{Path: root, ReadOnly: true})
		if o.RootFSType == "" {
			o.RootFSType = fsType
		}
	}
	m.disks = append(m.disks, c.Disks...)
	// The mounts go in a per-boot segment, so that the cached initramfs
	// does not depend on them (one cache entry per set of paths).
	perBoot := initramfs.Settings{Mounts: slices.Clone(o.Mounts)}
	o.Mounts = nil
	for i, s := range c.Shares {
		m.shares = append(m.shares, hostShare{tag: shareTag(i), hostDir: s.HostDir, writable: s.Writable})
		perBoot.Mounts = append(perBoot.Mounts, initramfs.Mount{Source: shareTag(i), Target: s.GuestPath, FSType: c.Sharing.fsType(), Options: c.Sharing.mountOptions(s.Writable)})
	}
	if m.initrd, err = bootfiles.Initramfs(ctx, o, assets); err != nil {
		return nil, err
	}
	if len(perBoot.Mounts) > 0 {
		if m.initrd, err = bootfiles.WithSegment(m.initrd, dir, perBoot); err != nil {
			return nil, err
		}
	}
	inst, cl, err := eng.boot(ctx, m)
	if err != nil {
		return nil, err
	}
	vm = &VM{inst: inst, client: cl, dir: dir, arch: c.Arch, done: make(chan struct{}),
		ready: time.Since(inst.Started())}
	go func() {
		<-inst.Done()
		cl.Close()
		lifetime.RemoveTemp(dir)
		close(vm.done)
	}()
	return vm, nil
}

// ForgetAccelVerdicts forgets that the hardware accelerator failed here
// before, so that the next boot in AccelAuto tries it again.
func ForgetAccelVerdicts() error { return qemu.ForgetAccelVerdicts("") }

// prepareRoot returns the root image and its filesystem type.
func prepareRoot(ctx context.Context, root, dir string, a bootfiles.Assets) (string, string, error) {
	if root == "" {
		img, err := bootfiles.BusyboxRoot(ctx, a)
		return img, "squashfs", err
	}
	st, err := os.Stat(root)
	if err != nil {
		return "", "", &ConfigError{Field: "Root", Err: err}
	}
	if !st.IsDir() {
		t, err := rootfs.FSType(root)
		if err != nil {
			return "", "", &ConfigError{Field: "Root", Err: err}
		}
		return root, t, nil
	}
	img := filepath.Join(dir, "root.squashfs")
	if err := rootfs.Squashfs(ctx, root, img, "zstd"); err != nil {
		return "", "", fmt.Errorf("microvm: packing Root %s: %w", root, err)
	}
	return img, "squashfs", nil
}

// Arch is the guest's arch.
func (vm *VM) Arch() string { return vm.arch }

// Accel is the accelerator the guest runs under: KVM, HVF or TCG.
func (vm *VM) Accel() string { return vm.inst.Accel() }

// FellBack is why the hardware accelerator was given up for software
// emulation during this boot, or "" if it was not.
func (vm *VM) FellBack() string { return vm.inst.FellBack() }

// ReadyAfter is how long the boot took from the VMM's start to the
// agent's answer.
func (vm *VM) ReadyAfter() time.Duration { return vm.ready }

// Console returns the last lines the guest printed (bounded; Config.Console
// receives all of it).
func (vm *VM) Console() string { return vm.inst.Console() }

// Client is the agent client: commands, files, clock, power.
func (vm *VM) Client() *agent.Client { return vm.client }

// Command returns the agent.Cmd to run name with arg in the guest, shaped
// like os/exec's Cmd (Run, Output, CombinedOutput, Start, Wait, pipes).
func (vm *VM) Command(ctx context.Context, name string, arg ...string) *agent.Cmd {
	return vm.client.Command(ctx, name, arg...)
}

// ReadFile returns the contents of a file in the guest.
func (vm *VM) ReadFile(ctx context.Context, path string) ([]byte, error) {
	return vm.client.ReadFile(ctx, path)
}

// WriteFile writes data to a file in the guest with mode perm.
func (vm *VM) WriteFile(ctx context.Context, path string, data []byte, perm os.FileMode) error {
	return vm.client.WriteFile(ctx, path, bytes.NewReader(data), perm, nil)
}

// Done is closed once the VM has ended and its files are removed.
func (vm *VM) Done() <-chan struct{} { return vm.done }

// Wait waits for the VM to end (the guest powered off, or it was closed
// or killed) or for ctx to end. It returns the VMM's exit error, if any.
func (vm *VM) Wait(ctx context.Context) error {
	select {
	case <-vm.done:
		return vm.inst.Wait(ctx)
	case <-ctx.Done():
		return fmt.Errorf("microvm: waiting for the VM to end: %w", ctx.Err())
	}
}

// CloseGrace is how long Close waits for the guest to power off before
// it kills the VM.
const CloseGrace = 10 * time.Second

// Close powers the guest off (its filesystems are synced and unmounted),
// waits up to CloseGrace for it, then kills the VM. A guest whose disks
// are all read-only loses nothing to Kill, which is faster.
func (vm *VM) Close() error {
	var err error
	vm.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), CloseGrace)
		defer cancel()
		// The agent may answer, or the connection may drop as the guest
		// goes down: either way, the VMM's exit is what says it is off.
		perr := vm.client.PowerOff(ctx)
		select {
		case <-vm.done:
		case <-ctx.Done():
			err = fmt.Errorf("microvm: the guest did not power off within %s (power off: %v); killed", CloseGrace, perr)
		}
		vm.Kill()
	})
	return err
}

// Kill stops the VM at once and returns when it has ended and its files
// are removed.
func (vm *VM) Kill() {
	vm.inst.Kill()
	<-vm.done
}

// normalize fills c's defaults and checks every field, naming the first
// bad one.
func (c Config) normalize() (Config, error) {
	bad := func(field, format string, a ...any) (Config, error) {
		return c, &ConfigError{Field: field, Err: fmt.Errorf(format, a...)}
	}
	var err error
	if c.Arch == "" {
		c.Arch = runtime.GOARCH
	}
	if c.Arch != "amd64" && c.Arch != "arm64" {
		return bad("Arch", "%q: want amd64 or arm64", c.Arch)
	}
	if _, err := bootfiles.For(c.Arch); err != nil {
		return bad("Arch", "%v (import microvm/allarch to boot every arch)", err)
	}
	lim := qemu.LimitsFor(c.Arch)
	if c.MemoryMiB == 0 {
		c.MemoryMiB = 256
	}
	if err := lim.CheckMemory(c.MemoryMiB, c.Kernel == ""); err != nil {
		return bad("MemoryMiB", "%v", err)
	}
	if c.CPUs == 0 {
		c.CPUs = 1
	}
	if err := lim.CheckCPUs(c.CPUs); err != nil {
		return bad("CPUs", "%v", err)
	}
	if c.Shape.String() == fmt.Sprintf("Shape(%d)", int(c.Shape)) {
		return bad("Shape", "unknown shape %d", int(c.Shape))
	}
	if c.Shape == ShapeVirtualization && c.Arch != "arm64" {
		return bad("Shape", "%s is arm64 only", c.Shape)
	}
	switch c.Accel {
	case "":
		c.Accel = AccelAuto
	case AccelAuto, AccelOn, AccelOff:
	default:
		return bad("Accel", "%q: want auto, on or off", c.Accel)
	}
	if c.Kernel != "" {
		if err := regularFile(c.Kernel); err != nil {
			return bad("Kernel", "%v", err)
		}
		if ka := qemu.KernelArch(c.Kernel); ka != "" && ka != c.Arch {
			return bad("Kernel", "%s is a kernel for %s, not for this %s guest", c.Kernel, ka, c.Arch)
		}
	}
	for i, w := range c.Append {
		if w == "" || strings.ContainsAny(w, " \t\n") {
			return bad(fmt.Sprintf("Append[%d]", i), "%q: want one non-empty word", w)
		}
	}
	if c.ShareRoot {
		if c.Root == "" {
			return bad("ShareRoot", "no Root: ShareRoot shares Root, a host directory")
		}
		if err := shareableDir(c.Root); err != nil {
			return bad("ShareRoot", "%w", err) // it names the directory
		}
		if c.Root, err = absDir(c.Root); err != nil {
			return bad("Root", "%v", err)
		}
	}
	if c.Root != "" && !c.ShareRoot {
		st, err := os.Stat(c.Root)
		if err != nil {
			return bad("Root", "%w", err)
		}
		if !st.IsDir() {
			if !st.Mode().IsRegular() && st.Mode()&os.ModeDevice == 0 {
				return bad("Root", "%s is not a directory, an image file or a block device", c.Root)
			}
			if _, err := rootfs.FSType(c.Root); err != nil {
				return bad("Root", "%w", err)
			}
		}
	}
	switch c.Sharing {
	case "":
		c.Sharing = Sharing9P
	case SharingAuto:
		c.Sharing = Sharing9P
		if virtiofsUsable() == nil {
			c.Sharing = SharingVirtioFS
		}
	case Sharing9P:
	case SharingVirtioFS:
		if err := virtiofsUsable(); err != nil {
			return bad("Sharing", "%v", err)
		}
	default:
		return bad("Sharing", "%q: want 9p, virtiofs or auto", c.Sharing)
	}
	if _, err := initramfs.Segment(c.Initramfs); err != nil {
		return bad("Initramfs", "%v", err)
	}
	for i, d := range c.Disks {
		f := fmt.Sprintf("Disks[%d]", i)
		if d.Path == "" {
			return bad(f, "no Path")
		}
		if d.Format != "" && d.Format != "raw" && d.Format != "qcow2" {
			return bad(f, "Format %q: want raw or qcow2", d.Format)
		}
		if _, err := os.Stat(d.Path); err != nil {
			return bad(f, "%v", err)
		}
	}
	targets := map[string]bool{}
	c.Shares = slices.Clone(c.Shares)
	for i, s := range c.Shares {
		f := fmt.Sprintf("Shares[%d]", i)
		if s.HostDir == "" {
			return bad(f, "no HostDir")
		}
		if err := shareableDir(s.HostDir); err != nil {
			return bad(f, "%w", err) // it names the directory
		}
		switch {
		case !filepath.IsAbs(s.GuestPath) || filepath.Clean(s.GuestPath) == "/":
			return bad(f, "GuestPath %q: want an absolute path below /", s.GuestPath)
		case targets[filepath.Clean(s.GuestPath)]:
			return bad(f, "GuestPath %s is shared twice", s.GuestPath)
		}
		targets[filepath.Clean(s.GuestPath)] = true
		if c.Shares[i].HostDir, err = absDir(s.HostDir); err != nil {
			return bad(f, "HostDir: %v", err)
		}
	}
	if c.DTB != "" {
		if err := regularFile(c.DTB); err != nil {
			return bad("DTB", "%v", err)
		}
	}
	return c, nil
}

// regularFile checks that path is a readable regular file.
func regularFile(path string) error {
	return checkOpened(path, func(_ *os.File, st os.FileInfo) error {
		if !st.Mode().IsRegular() {
			return fmt.Errorf("%s is not a regular file", path)
		}
		return nil
	})
}

// checkOpened opens path for reading, as the VMM or a daemon will, and
// runs check on it.
func checkOpened(path string, check func(*os.File, os.FileInfo) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	return check(f, st)
}

// Limits are the guest sizes Start accepts for an arch (MemoryMiB, CPUs).
type Limits = qemu.Limits

// LimitsFor returns the limits of a guest of arch.
func LimitsFor(arch string) Limits { return qemu.LimitsFor(arch) }
