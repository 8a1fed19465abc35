package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/supermachine-go/supermachine-kernel/agent"
	"github.com/supermachine-go/supermachine-kernel/initramfs"
	"github.com/supermachine-go/supermachine-kernel/internal/qemu"
	"github.com/supermachine-go/supermachine-kernel/internal/rootfs"
	"github.com/supermachine-go/supermachine-kernel/kernel"
)

func cmdBoot(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("boot", "[flags] -- COMMAND [ARG...]", stderr)
	root := fs.String("root", "", "root: a directory (packed as squashfs), a squashfs or ext4 image; default: a tiny busybox root built on the fly")
	mem := fs.Int("mem", 256, "guest memory in MiB")
	cpus := fs.Int("cpus", 1, "virtual CPUs")
	kvm := fs.String("kvm", "auto", "use KVM: auto (when /dev/kvm works), on, off (software emulation)")
	tty := fs.Bool("tty", false, "run COMMAND on a pseudo-terminal")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up after this long (boot and command)")
	verbose := fs.Bool("v", false, "show the guest console")
	appendArgs := fs.String("append", "", "extra kernel command line parameters")
	net := fs.Bool("net", false, "add a virtio-net device (QEMU user networking)")
	shapeName := fs.String("shape", "mmio", "machine shape: mmio, firecracker (amd64: the ELF vmlinux through PVH), pci (q35/virt with virtio-pci), virtualization-framework (arm64: virtio-pci only, console on hvc0)")
	var o initramfs.Options
	var mounts, agentArgs multiFlag
	initramfsFlags(fs, &o, &mounts, &agentArgs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errUsage
	}
	if *kvm != "auto" && *kvm != "on" && *kvm != "off" {
		return fmt.Errorf("-kvm %q: want auto, on or off", *kvm)
	}
	shape, err := qemu.ParseShape(*shapeName)
	if err != nil {
		return fmt.Errorf("-shape: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	start := time.Now()
	progress := func(format string, a ...any) {
		fmt.Fprintf(stderr, "[%6.3fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, a...))
	}

	dir, err := os.MkdirTemp("", "supermachine-boot-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	progress("preparing the kernel, initramfs and root image")
	kernelAsset := kernel.Kernel
	if shape == qemu.ShapeFirecracker {
		kernelAsset = kernel.Vmlinux // amd64: the ELF; arm64: the Image
	}
	kernelPath, err := kernelAsset.Cached(ctx)
	if err != nil {
		return err
	}
	rootImage, fsType, err := prepareRoot(ctx, *root, dir)
	if err != nil {
		return err
	}
	if o.RootFSType == "" {
		o.RootFSType = fsType
	}
	initrd, err := buildInitramfs(o, mounts, agentArgs)
	if err != nil {
		return err
	}
	initrdPath := filepath.Join(dir, "initrd.cpio")
	if err := os.WriteFile(initrdPath, initrd, 0o644); err != nil {
		return err
	}

	useKVM := *kvm == "on" || (*kvm == "auto" && qemu.KVMUsable(kernel.Arch))
	kvmMode := "off"
	if useKVM {
		kvmMode = "on"
	}
	var extra []string
	if *appendArgs != "" {
		extra = strings.Fields(*appendArgs)
	}
	sock := filepath.Join(dir, "agent.sock")
	cfg := qemu.Config{
		Arch: kernel.Arch, Kernel: kernelPath, Initrd: initrdPath,
		Append:    extra,
		MemoryMiB: *mem, CPUs: *cpus, KVM: kvmMode, Net: *net, Shape: shape,
		Disks:       []qemu.Disk{{Path: rootImage, ReadOnly: true}},
		AgentSocket: sock,
	}
	if *verbose {
		cfg.Console = stderr
	}
	if shape == qemu.ShapeVirtualization {
		cfg.DTB = filepath.Join(dir, "virt-no-uart.dtb")
		if err := qemu.NoUARTDeviceTree(ctx, cfg, cfg.DTB); err != nil {
			return err
		}
	}
	accel := "software emulation (TCG)"
	if useKVM {
		accel = "KVM"
	}
	progress("booting %s %s under QEMU with %s, shape %s", kernel.Arch, kernel.Kernel.Version(), accel, shape)
	vm, err := qemu.Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer vm.Kill()
	c, err := vm.ConnectAgent(ctx)
	if err != nil {
		return fmt.Errorf("%w\n--- guest console ---\n%s", err, vm.Console())
	}
	defer c.Close()
	ready := time.Since(vm.Started())
	if m := readyRE.FindStringSubmatch(vm.Console()); m != nil {
		progress("agent ready: %s after QEMU started, guest uptime %ss", ready.Round(time.Millisecond), m[1])
	} else {
		progress("agent ready: %s after QEMU started", ready.Round(time.Millisecond))
	}

	code, runErr := runCommand(ctx, c, fs.Args(), *tty, stdout, stderr)
	pctx, pcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer pcancel()
	c.PowerOff(pctx)
	if err := vm.Wait(pctx); errors.Is(err, context.DeadlineExceeded) {
		progress("the guest did not power off; stopping QEMU")
	}
	if runErr != nil {
		return runErr
	}
	if code != 0 {
		return exitError{code}
	}
	return nil
}

var readyRE = regexp.MustCompile(`supermachine-agent \S+ ready .*uptime=([0-9.]+)s`)

// prepareRoot returns the root image and its filesystem type: the image
// given, a directory packed as squashfs, or a busybox root.
func prepareRoot(ctx context.Context, root, dir string) (string, string, error) {
	tree := root
	if root != "" {
		st, err := os.Stat(root)
		if err != nil {
			return "", "", fmt.Errorf("-root: %w", err)
		}
		if !st.IsDir() {
			t, err := rootfs.FSType(root)
			return root, t, err
		}
	} else {
		bb, err := kernel.Busybox.Bytes()
		if err != nil {
			return "", "", err
		}
		tree = filepath.Join(dir, "root")
		if err := rootfs.WriteBusyboxTree(tree, bb, nil); err != nil {
			return "", "", err
		}
	}
	img := filepath.Join(dir, "root.squashfs")
	if err := rootfs.Squashfs(ctx, tree, img, "zstd"); err != nil {
		return "", "", err
	}
	return img, "squashfs", nil
}

// runCommand runs argv through the agent with this process's stdio and
// returns its exit code (128+n for a signal, as shells do).
func runCommand(ctx context.Context, c *agent.Client, argv []string, tty bool, stdout, stderr io.Writer) (int, error) {
	cmd := c.Command(ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if st, err := os.Stdin.Stat(); err == nil && st.Mode()&os.ModeCharDevice == 0 {
		cmd.Stdin = os.Stdin // piped or redirected input
	}
	cmd.TTY = tty
	err := cmd.Run()
	var ee *agent.ExitError
	if errors.As(err, &ee) {
		if ee.ProcessState.Signal() != "" {
			fmt.Fprintf(stderr, "%s: killed by %s\n", argv[0], ee.ProcessState.Signal())
			return 128 + signalNumber(ee.ProcessState.Signal()), nil
		}
		return ee.ExitCode(), nil
	}
	return 0, err
}

func signalNumber(name string) int {
	switch strings.TrimPrefix(name, "SIG") {
	case "HUP":
		return 1
	case "INT":
		return 2
	case "QUIT":
		return 3
	case "KILL":
		return 9
	case "SEGV":
		return 11
	case "PIPE":
		return 13
	case "TERM":
		return 15
	}
	return 0
}
