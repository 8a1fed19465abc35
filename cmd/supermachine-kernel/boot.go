package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/supermachine-go/supermachine-kernel/initramfs"
	"github.com/supermachine-go/supermachine-kernel/internal/oci"
	"github.com/supermachine-go/supermachine-kernel/kernel"
	"github.com/supermachine-go/supermachine-kernel/microvm"
	_ "github.com/supermachine-go/supermachine-kernel/microvm/allarch" // boot -arch and vmexec run either arch
)

func cmdBoot(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("boot", "[flags] -- COMMAND [ARG...]\n       supermachine-kernel boot -image REF [flags] [-- COMMAND [ARG...]]", stderr)
	root := fs.String("root", "", "root: a directory (packed as squashfs), a squashfs or ext4 image; default: a tiny busybox root (cached)")
	lim := microvm.LimitsFor(kernel.Arch)
	mem := fs.Int("mem", 256, fmt.Sprintf("guest memory in MiB (%d to %d)", lim.MinMemoryMiB, lim.MaxMemoryMiB))
	cpus := fs.Int("cpus", 1, fmt.Sprintf("virtual CPUs (1 to %d)", lim.MaxCPUs))
	kvm := fs.String("kvm", "auto", "accelerator: auto (KVM or Hypervisor.framework, falling back to software emulation if it cannot run the guest), on (never fall back), off (software emulation; /dev/kvm is not touched)")
	forget := fs.Bool("forget-accel", false, "forget that the hardware accelerator failed here before, and try it again")
	tty := fs.Bool("tty", false, "run COMMAND on a pseudo-terminal")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up on COMMAND after this long (the boot has its own deadlines)")
	verbose := fs.Bool("v", false, "show QEMU's command line, the guest console and QEMU's messages")
	appendArgs := fs.String("append", "", "extra kernel command line parameters")
	net := fs.Bool("net", false, "add a virtio-net device (QEMU user networking)")
	rescue := fs.Bool("rescue", false, "connect the guest's serial console to this terminal and, if the init fails, give a busybox shell on it (supermachine.rescue=1) instead of powering off")
	shapeName := fs.String("shape", "mmio", "machine shape: mmio, firecracker (amd64: the ELF vmlinux through PVH), pci (q35/virt with virtio-pci), virtualization-framework (arm64: virtio-pci only, console on hvc0)")
	var o initramfs.Options
	var mounts, agentArgs multiFlag
	initramfsFlags(fs, &o, &mounts, &agentArgs)
	var img imageFlags
	img.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 && img.image == "" {
		fs.Usage()
		return errUsage
	}
	if err := img.check(*root); err != nil {
		return err
	}
	lim = microvm.LimitsFor(img.arch) // the guest's arch, which -arch may have changed
	if *kvm != "auto" && *kvm != "on" && *kvm != "off" {
		return fmt.Errorf("-kvm %q: want auto, on or off", *kvm)
	}
	shape, err := microvm.ParseShape(*shapeName)
	if err != nil {
		return fmt.Errorf("-shape: %w", err)
	}
	if err := lim.CheckMemory(*mem, true); err != nil {
		return fmt.Errorf("-mem: %w", err)
	}
	if err := lim.CheckCPUs(*cpus); err != nil {
		return fmt.Errorf("-cpus: %w", err)
	}
	start := time.Now()
	progress := func(format string, a ...any) {
		fmt.Fprintf(stderr, "[%6.3fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, a...))
	}
	if *forget {
		if err := microvm.ForgetAccelVerdicts(); err != nil {
			return err
		}
	}

	var image *oci.Image
	if img.image != "" {
		if image, err = img.prepare(ctx, progress); err != nil {
			return err
		}
		*root = image.Root
	}
	argv, settings, err := img.command(fs.Args(), image)
	if err != nil {
		return err
	}
	if o.Mounts, err = parseMounts(mounts); err != nil {
		return err
	}
	o.AgentArgs = agentArgs
	accel := map[string]microvm.Accel{"auto": microvm.AccelAuto, "on": microvm.AccelOn, "off": microvm.AccelOff}[*kvm]
	cfg := microvm.Config{
		Arch: img.arch, MemoryMiB: *mem, CPUs: *cpus, Shape: shape, Accel: accel,
		Append: strings.Fields(*appendArgs), Root: *root, Initramfs: o.Settings, Net: *net,
		Progress: func(msg string) { progress("%s", msg) },
	}
	if *verbose {
		cfg.Console, cfg.QEMUOutput = stderr, stderr
		cfg.VMMCommand = func(argv []string) { progress("%s", shellQuote(argv)) }
	}
	if *rescue {
		cfg.Append = append(cfg.Append, "supermachine.rescue=1")
		cfg.Console, cfg.ConsoleInput = stderr, os.Stdin
		// A rescue session lasts as long as its user wants.
		cfg.Deadlines.Silence = 24 * time.Hour
	}
	progress("machine shape %s", shape)
	vm, err := microvm.Start(ctx, cfg)
	if err != nil {
		return flagError(err)
	}
	defer vm.Kill()
	c := vm.Client()
	if m := readyRE.FindStringSubmatch(vm.Console()); m != nil {
		progress("agent ready: %s after QEMU started, guest uptime %ss", vm.ReadyAfter().Round(time.Millisecond), m[1])
	} else {
		progress("agent ready: %s after QEMU started", vm.ReadyAfter().Round(time.Millisecond))
	}

	cctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	code, runErr := runCommandWith(cctx, c, argv, settings, *tty, stdout, stderr)
	if errors.Is(runErr, context.DeadlineExceeded) && cctx.Err() != nil {
		runErr = fmt.Errorf("%s did not finish within -timeout %s", argv[0], *timeout)
	}
	// Nothing in the guest needs an orderly shutdown: its disks are
	// attached read-only and its writes live in a tmpfs. Stopping QEMU
	// at once saves the guest's power-off path (about 0.1 s under TCG).
	vm.Kill()
	if runErr != nil {
		return runErr
	}
	if code != 0 {
		return exitError{code}
	}
	return nil
}

// bootFlags are the flags that set each microvm.Config field.
var bootFlags = map[string]string{
	"Arch": "-arch", "MemoryMiB": "-mem", "CPUs": "-cpus", "Shape": "-shape", "Accel": "-kvm",
	"Append": "-append", "Root": "-root", "Initramfs": "the initramfs flags",
}

// flagError names the flag of a Config field that microvm refused.
func flagError(err error) error {
	var ce *microvm.ConfigError
	if errors.As(err, &ce) {
		field, _, _ := strings.Cut(ce.Field, "[")
		if flag, ok := bootFlags[field]; ok {
			return fmt.Errorf("%s: %w", flag, ce.Err)
		}
	}
	return err
}

var readyRE = regexp.MustCompile(`supermachine-agent \S+ ready .*uptime=([0-9.]+)s`)

// shellQuote joins argv as a shell would need it typed.
func shellQuote(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		if a != "" && strings.Trim(a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=+,./:@%") == "" {
			q[i] = a
			continue
		}
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}
