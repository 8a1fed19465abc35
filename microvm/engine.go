package microvm

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/supermachine-go/supermachine-kernel/agent"
	"github.com/supermachine-go/supermachine-kernel/internal/qemu"
)

// engine is the seam between this package and a VMM: it boots a machine
// and returns the running instance with its agent connected. QEMU is the
// one implementation (qemuEngine); a Firecracker or Cloud Hypervisor
// engine would implement the same method.
type engine interface {
	boot(ctx context.Context, m machine) (instance, *agent.Client, error)
}

// machine is a VM as any engine needs it: files, sizes, devices and
// writers, all prepared and checked.
type machine struct {
	arch         string
	shape        Shape
	accel        Accel
	kernel       string
	kernelSHA256 string // of the bundled kernel; empty for another
	initrd       string
	append       []string
	memoryMiB    int
	cpus         int
	disks        []Disk      // the root image first, unless the root is shared
	shares       []hostShare // the shared root first, if any
	sharing      Sharing     // 9p or virtiofs
	net          bool
	dtb          string
	agentSocket  string // the Unix socket the agent's channel is served on
	dir          string // the VM's temporary directory, removed when it ends
	console      io.Writer
	vmmOutput    io.Writer
	consoleInput io.Reader
	trace        func(argv []string)
	progress     func(string)
	deadlines    Deadlines
}

// instance is a running VM as the engine sees it.
type instance interface {
	Accel() string      // KVM, HVF or TCG
	FellBack() string   // why the hardware accelerator was given up, or ""
	Started() time.Time // when the VMM started
	Console() string    // the last console lines
	Done() <-chan struct{}
	Wait(ctx context.Context) error
	Kill()
}

// qemuEngine boots machines under QEMU (internal/qemu).
type qemuEngine struct{}

func (qemuEngine) boot(ctx context.Context, m machine) (instance, *agent.Client, error) {
	c := qemu.Config{
		Arch: m.arch, Kernel: m.kernel, KernelSHA256: m.kernelSHA256, Initrd: m.initrd,
		Shape: m.shape, Append: m.append, MemoryMiB: m.memoryMiB, CPUs: m.cpus,
		AgentSocket: m.agentSocket, Net: m.net, Console: m.console, Stderr: m.vmmOutput,
		Progress: m.progress, KVM: string(m.accel), Deadlines: m.deadlines, DTB: m.dtb,
		ConsoleInput: m.consoleInput, Trace: m.trace,
	}
	for _, d := range m.disks {
		c.Disks = append(c.Disks, qemu.Disk{Path: d.Path, ReadOnly: d.ReadOnly, Format: d.Format})
	}
	var daemons *virtiofsds
	switch m.sharing {
	case Sharing9P:
		for _, s := range m.shares {
			c.Shares9P = append(c.Shares9P, qemu.Share9P{Tag: s.tag, Path: s.hostDir, ReadOnly: !s.writable})
		}
	case SharingVirtioFS:
		if len(m.shares) == 0 {
			break
		}
		if m.progress != nil {
			m.progress(fmt.Sprintf("starting virtiofsd for %d shared directories", len(m.shares)))
		}
		var sockets []string
		var err error
		if daemons, sockets, err = startVirtiofsds(ctx, m.dir, m.shares, m.vmmOutput); err != nil {
			return nil, nil, err
		}
		for i, s := range m.shares {
			c.VirtioFS = append(c.VirtioFS, qemu.VirtioFS{Tag: s.tag, Socket: sockets[i]})
		}
	}
	if m.shape == ShapeVirtualization && c.DTB == "" {
		c.DTB = filepath.Join(m.dir, "virt-no-uart.dtb")
		if err := qemu.NoUARTDeviceTree(ctx, c, c.DTB); err != nil {
			daemons.stop()
			return nil, nil, err
		}
	}
	vm, cl, err := qemu.Boot(ctx, c)
	if err != nil {
		daemons.stop()
		return nil, nil, fmt.Errorf("%w%s", err, daemons.messages())
	}
	if daemons == nil {
		return vm, cl, nil
	}
	w := &withDaemons{instance: vm, done: make(chan struct{})}
	go func() {
		<-vm.Done()
		daemons.stop()
		close(w.done)
	}()
	return w, cl, nil
}

// withDaemons is a QEMU instance with the virtiofsd daemons that serve
// it, which end when it does.
type withDaemons struct {
	instance
	done chan struct{} // closed once QEMU and the daemons have exited
}

func (w *withDaemons) Done() <-chan struct{} { return w.done }
