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
	kernelPath, err := kernel.Kernel.Cached(ctx)
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
		Cmdline:   qemu.CommandLine(kernel.Arch, useKVM, extra...),
		MemoryMiB: *mem, CPUs: *cpus, KVM: kvmMode, Net: *net,
		Disks:       []qemu.Disk{{Path: rootImage, ReadOnly: true}},
		AgentSocket: sock,
	}
	if *verbose {
		cfg.Console = stderr
	}
	accel := "software emulation (TCG)"
	if useKVM {
		accel = "KVM"
	}
	progress("booting %s %s under QEMU with %s", kernel.Arch, kernel.Kernel.Version(), accel)
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
