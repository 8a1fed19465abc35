// Package qemu starts a guest of the bundled kernel under QEMU, in the
// machine shape of a kind of VMM (see Shape): by default microvm on
// x86-64 and virt on arm64 with virtio-mmio devices; also Firecracker's
// (an ELF vmlinux through PVH), a PCI machine (q35, virt) and Apple
// Virtualization.framework's (virtio-pci only, console on hvc0). Guests
// get virtio disks, an optional virtio-net device, and a virtio-serial
// port for the agent backed by a Unix socket. The kernel command line
// comes from kernel.CommandLine for the shape.
//
// It uses KVM when /dev/kvm is usable for the guest's arch, and QEMU's
// software emulation (TCG) otherwise.
package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/supermachine-go/supermachine-kernel/agent"
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
	Initrd string // initramfs path
	// Shape is the kind of VMM the machine imitates; default ShapeMMIO.
	Shape Shape
	// Append is appended to the kernel command line, which
	// kernel.CommandLine makes for the shape, arch and accelerator.
	Append    []string
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
	// KVM: "auto" (default), "on" or "off".
	KVM string
	// DTB, if set, is the device tree to give the guest (-dtb) on
	// ShapeVirtualization: see NoUARTDeviceTree.
	DTB string
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

// KVMUsable says whether guests of arch run under KVM here: the guest arch
// is the host's, /dev/kvm opens, and QEMU really starts a KVM guest (a
// nested or restricted KVM may open fine and still fail on the first vCPU).
// The answer is probed once per process; SUPERMACHINE_QEMU_ACCEL=kvm or
// =tcg overrides it.
func KVMUsable(arch string) bool {
	switch os.Getenv("SUPERMACHINE_QEMU_ACCEL") {
	case "kvm":
		return true
	case "tcg":
		return false
	}
	if arch != runtime.GOARCH {
		return false
	}
	kvmOnce.Do(func() { kvmOK = probeKVM(arch) })
	return kvmOK
}

var (
	kvmOnce sync.Once
	kvmOK   bool
)

func probeKVM(arch string) bool {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	bin, _, err := Binary(arch)
	if err != nil {
		return false
	}
	machine := "microvm"
	if arch == "arm64" {
		machine = "virt"
	}
	// A guest without a kernel: the firmware runs; a broken KVM makes
	// QEMU exit at once.
	cmd := exec.Command(bin, "-accel", "kvm", "-M", machine, "-cpu", "host", "-m", "64",
		"-nodefaults", "-display", "none", "-monitor", "none", "-serial", "none", "-no-reboot")
	if err := cmd.Start(); err != nil {
		return false
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
		return false
	case <-time.After(time.Second):
		cmd.Process.Kill()
		<-done
		return true
	}
}

// Args returns the QEMU binary and arguments for c.
func (c Config) Args() (string, []string, error) {
	arch := c.Arch
	if arch == "" {
		arch = runtime.GOARCH
	}
	bin, _, err := Binary(arch)
	if err != nil {
		return "", nil, err
	}
	kvm := c.KVM == "on" || ((c.KVM == "" || c.KVM == "auto") && KVMUsable(arch))
	mem, cpus := c.MemoryMiB, c.CPUs
	if mem == 0 {
		mem = 256
	}
	if cpus == 0 {
		cpus = 1
	}
	machine, err := c.Shape.machine(arch)
	if err != nil {
		return "", nil, err
	}
	if err := c.checkKernel(arch); err != nil {
		return "", nil, err
	}
	a := []string{"-M", machine}
	if kvm {
		a = append(a, "-accel", "kvm", "-cpu", "host")
	} else {
		a = append(a, "-accel", "tcg", "-cpu", "max")
	}
	a = append(a,
		"-m", strconv.Itoa(mem), "-smp", strconv.Itoa(cpus),
		"-nodefaults", "-no-user-config", "-display", "none", "-monitor", "none",
		"-no-reboot")
	a = append(a, c.consoleArgs()...)
	a = append(a, "-kernel", c.Kernel, "-append", c.cmdline(arch, kvm))
	if c.Initrd != "" {
		a = append(a, "-initrd", c.Initrd)
	}
	a = append(a, c.deviceArgs(arch)...)
	return bin, append(a, c.ExtraArgs...), nil
}

// VM is a running guest.
type VM struct {
	sock    string
	cmd     *exec.Cmd
	done    chan struct{}
	err     error
	console *syncBuffer
	started time.Time
}

// Start starts QEMU. The guest runs until it powers off or reboots, or ctx
// ends (then QEMU is killed).
func Start(ctx context.Context, c Config) (*VM, error) {
	bin, args, err := c.Args()
	if err != nil {
		return nil, err
	}
	if _, err := exec.LookPath(bin); err != nil {
		_, pkg, _ := Binary(c.Arch)
		return nil, fmt.Errorf("%w: %s not found; install the Debian package %s (apt-get install %s)", ErrNoQEMU, bin, pkg, pkg)
	}
	if c.AgentSocket != "" {
		os.Remove(c.AgentSocket)
		if err := os.MkdirAll(filepath.Dir(c.AgentSocket), 0o755); err != nil {
			return nil, err
		}
	}
	vm := &VM{sock: c.AgentSocket, done: make(chan struct{}), console: &syncBuffer{}}
	cmd := exec.CommandContext(ctx, bin, args...)
	var out io.Writer = vm.console
	if c.Console != nil {
		out = io.MultiWriter(vm.console, c.Console)
	}
	cmd.Stdout, cmd.Stderr = out, out
	vm.cmd = cmd
	vm.started = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("qemu: %w", err)
	}
	go func() {
		vm.err = cmd.Wait()
		close(vm.done)
	}()
	if c.AgentSocket != "" {
		// QEMU creates the socket while it starts; wait for it.
		for {
			if _, err := os.Stat(c.AgentSocket); err == nil {
				break
			}
			select {
			case <-vm.done:
				return nil, fmt.Errorf("qemu exited while starting: %v\n%s", vm.err, vm.Console())
			case <-ctx.Done():
				vm.Kill()
				return nil, ctx.Err()
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	return vm, nil
}

// ConnectAgent connects to the agent through the AgentSocket and runs the
// protocol handshake, which completes once the agent in the guest has
// opened its port. It fails early if QEMU exits.
func (vm *VM) ConnectAgent(ctx context.Context) (*agent.Client, error) {
	if vm.sock == "" {
		return nil, errors.New("qemu: the VM has no AgentSocket")
	}
	// QEMU binds the socket before it listens: retry until it accepts.
	var d net.Dialer
	var conn net.Conn
	for {
		var err error
		if conn, err = d.DialContext(ctx, "unix", vm.sock); err == nil {
			break
		}
		select {
		case <-vm.done:
			return nil, fmt.Errorf("qemu exited: %w", err)
		case <-ctx.Done():
			return nil, err
		case <-time.After(2 * time.Millisecond):
		}
	}
	type result struct {
		c   *agent.Client
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := agent.NewClient(ctx, conn)
		ch <- result{c, err}
	}()
	select {
	case r := <-ch:
		return r.c, r.err
	case <-vm.done:
		conn.Close()
		return nil, errors.New("the guest stopped before its agent answered")
	}
}

// Started is when QEMU was started.
func (vm *VM) Started() time.Time { return vm.started }

// Console returns everything the guest printed so far.
func (vm *VM) Console() string { return vm.console.String() }

// Done is closed when QEMU has exited.
func (vm *VM) Done() <-chan struct{} { return vm.done }

// Wait waits for QEMU to exit, or ctx to end.
func (vm *VM) Wait(ctx context.Context) error {
	select {
	case <-vm.done:
		return vm.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Kill stops QEMU at once and waits for it.
func (vm *VM) Kill() {
	if vm.cmd.Process != nil {
		vm.cmd.Process.Kill()
	}
	<-vm.done
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
