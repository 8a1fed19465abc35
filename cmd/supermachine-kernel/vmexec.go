package main

import (
	"cmp"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/supermachine-go/supermachine-kernel/agent"
	archfacts "github.com/supermachine-go/supermachine-kernel/internal/arch"
	"github.com/supermachine-go/supermachine-kernel/microvm"
)

// vmexecConfigFile is the optional settings file of vmexec, looked up
// from the working directory upwards to the module or repository root.
const vmexecConfigFile = ".supermachine-vmexec.toml"

// vmexecConfig holds vmexec's settings; the file sets them, flags
// override them.
type vmexecConfig struct {
	Memory  int      `toml:"memory"`  // MiB
	CPUs    int      `toml:"cpus"`    // virtual CPUs
	Append  []string `toml:"append"`  // extra kernel command line parameters
	Mounts  []string `toml:"mounts"`  // HOST[:GUEST][:rw], read-only unless :rw
	Net     bool     `toml:"net"`     // a virtio-net device with QEMU user networking
	KVM     string   `toml:"kvm"`     // auto, on, off
	Kernel  string   `toml:"kernel"`  // another kernel image for the guest arch
	Timeout string   `toml:"timeout"` // e.g. "10m"; default none (go test has -timeout)
	Root    bool     `toml:"root"`    // run as root in the guest, not as the invoking user
	Share   string   `toml:"share"`   // auto, virtiofs, 9p
}

// guestEnvDrop are host environment variables that mean nothing in the
// guest (sessions, agents and displays of the host).
var guestEnvDrop = []string{
	"DISPLAY", "WAYLAND_DISPLAY", "XAUTHORITY", "SSH_AUTH_SOCK", "SSH_AGENT_PID",
	"SSH_CONNECTION", "SSH_CLIENT", "SSH_TTY", "DBUS_SESSION_BUS_ADDRESS",
	"XDG_RUNTIME_DIR", "XDG_SESSION_ID", "XDG_SESSION_TYPE", "XDG_SESSION_CLASS",
	"GPG_AGENT_INFO", "TMUX", "TMUX_PANE", "STY", "WINDOWID", "INVOCATION_ID", "JOURNAL_STREAM",
	"NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID",
}

func cmdVMExec(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("vmexec", "[flags] [--] BINARY [ARG...]\n\nruns a Linux executable (e.g. a Go test binary: go test -exec 'supermachine-kernel vmexec --')\nin a microVM of the bundled kernel for the binary's arch, as the invoking user (-root: as root\nin the guest), with the host's files visible read-only and the working directory writable;\nexits with its exit code.\nSettings also come from "+vmexecConfigFile+" at the repository root", stderr)
	cfg, cfgPath, err := loadVMExecConfig()
	if err != nil {
		return err
	}
	mem := fs.Int("mem", cmp.Or(cfg.Memory, 1024), fmt.Sprintf("guest memory in MiB (amd64: %d to %d; arm64: %d to %d)",
		microvm.LimitsFor("amd64").MinMemoryMiB, microvm.LimitsFor("amd64").MaxMemoryMiB, microvm.LimitsFor("arm64").MinMemoryMiB, microvm.LimitsFor("arm64").MaxMemoryMiB))
	cpus := fs.Int("cpus", cmp.Or(cfg.CPUs, min(2, runtime.NumCPU())), fmt.Sprintf("virtual CPUs (amd64: 1 to %d; arm64: 1 to %d)", microvm.LimitsFor("amd64").MaxCPUs, microvm.LimitsFor("arm64").MaxCPUs))
	kvm := fs.String("kvm", cmp.Or(cfg.KVM, "auto"), "accelerator: auto, on, off (see boot -h)")
	kernelFlag := fs.String("kernel", cfg.Kernel, "boot this kernel image instead of the bundled one (it must have virtio-mmio, virtio-fs, overlayfs and the serial console built in)")
	appendArgs := fs.String("append", strings.Join(cfg.Append, " "), "extra kernel command line parameters")
	net := fs.Bool("net", cfg.Net, "add a virtio-net device (QEMU user networking)")
	timeout := fs.Duration("timeout", 0, "give up on the binary after this long (default: no limit)")
	verbose := fs.Bool("v", false, "show boot progress, QEMU's command line, the guest console and QEMU's and virtiofsd's messages")
	asRoot := fs.Bool("root", cfg.Root, "run the binary as root in the guest (default: as the invoking user's uid and gid); needs no privilege on the host")
	share := fs.String("share", cmp.Or(cfg.Share, "auto"), "how the host's files reach the guest: virtiofs (needs root on the host and virtiofsd), 9p (QEMU's own server, no privilege) or auto (virtiofs as root with virtiofsd installed, 9p otherwise)")
	mounts := multiFlag(cfg.Mounts)
	fs.Var(&mounts, "mount", "also show host directory HOST at GUEST: HOST[:GUEST][:rw] (repeatable; read-only unless :rw)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errUsage
	}
	if errVMExecUnsupported != nil {
		return errVMExecUnsupported
	}
	if cfg.Timeout != "" && *timeout == 0 {
		if *timeout, err = time.ParseDuration(cfg.Timeout); err != nil {
			return fmt.Errorf("%s: timeout: %w", cfgPath, err)
		}
	}
	logw := io.Discard
	if *verbose {
		logw = stderr
		if cfgPath != "" {
			fmt.Fprintf(stderr, "vmexec: settings from %s\n", cfgPath)
		}
	}
	start := time.Now()
	progress := func(format string, a ...any) {
		fmt.Fprintf(logw, "[%6.3fs] vmexec: %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, a...))
	}

	binary, err := filepath.Abs(fs.Arg(0))
	if err != nil {
		return err
	}
	arch, err := executableArch(binary)
	if err != nil {
		return err
	}
	cwd, err := os.Getwd()
	if err != nil {
		return err
	}
	if cwd == "/" {
		return errors.New("the working directory is /, which the guest would get writable: run it from a directory of its own")
	}
	lim := microvm.LimitsFor(arch)
	if err := lim.CheckMemory(*mem, *kernelFlag == ""); err != nil {
		return fmt.Errorf("-mem (%s guest): %w", arch, err)
	}
	if err := lim.CheckCPUs(*cpus); err != nil {
		return fmt.Errorf("-cpus (%s guest): %w", arch, err)
	}
	// The working directory and the directory go built the binary in
	// (go test writes coverage and other outputs there) are writable in
	// the guest; everything else of the host is read-only.
	binds := []bindMount{{host: cwd, guest: cwd, rw: true}}
	if d := filepath.Dir(binary); !within(d, cwd) && goBuildDir(d) {
		binds = append(binds, bindMount{host: d, guest: d, rw: true})
	}
	for _, m := range mounts {
		b, err := parseBindMount(m)
		if err != nil {
			return err
		}
		binds = append(binds, b)
	}
	sharing := map[string]microvm.Sharing{"auto": microvm.SharingAuto, "9p": microvm.Sharing9P, "virtiofs": microvm.SharingVirtioFS}[*share]
	if sharing == "" {
		return fmt.Errorf("-share %q: want auto, virtiofs or 9p", *share)
	}
	accel := map[string]microvm.Accel{"auto": microvm.AccelAuto, "on": microvm.AccelOn, "off": microvm.AccelOff}[*kvm]
	if accel == "" {
		return fmt.Errorf("-kvm %q: want auto, on or off", *kvm)
	}
	// The host's root is the guest's, read-only on the host side under
	// the guest's overlay; the binds are shares over it.
	mcfg := microvm.Config{
		Arch: arch, MemoryMiB: *mem, CPUs: *cpus, Accel: accel, Kernel: *kernelFlag,
		Append: strings.Fields(*appendArgs), Net: *net,
		Root: "/", ShareRoot: true, Sharing: sharing,
		Progress: func(msg string) { progress("%s", msg) },
	}
	for _, b := range binds {
		mcfg.Shares = append(mcfg.Shares, microvm.Share{HostDir: b.host, GuestPath: b.guest, Writable: b.rw})
	}
	if *verbose {
		mcfg.Console, mcfg.QEMUOutput = stderr, stderr
		mcfg.VMMCommand = func(argv []string) { progress("%s", shellQuote(argv)) }
	}
	vm, err := microvm.Start(ctx, mcfg)
	if err != nil {
		return vmexecConfigError(err, binds)
	}
	defer vm.Kill()
	c := vm.Client()
	progress("agent ready %s after QEMU started; running %s", vm.ReadyAfter().Round(time.Millisecond), filepath.Base(binary))

	cctx := ctx
	if *timeout > 0 {
		var cancel context.CancelFunc
		cctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	cmd := c.Command(cctx, binary, fs.Args()[1:]...)
	cmd.Dir = cwd
	if !*asRoot {
		// As on the host: the guest's files are the host's, with the
		// host's owners and modes.
		cmd.User = fmt.Sprintf("%d:%d", os.Getuid(), os.Getgid())
	}
	cmd.Env = guestEnv(os.Environ())
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if st, err := os.Stdin.Stat(); err == nil && st.Mode()&os.ModeCharDevice == 0 && st.Mode()&os.ModeNamedPipe != 0 {
		cmd.Stdin = os.Stdin
	}
	// A signal to vmexec reaches the binary first, as on the host: a Go
	// test binary prints its goroutine stacks on go test's SIGQUIT.
	runErr := cmd.Start()
	if runErr == nil {
		done := make(chan struct{})
		clear := setSignalForwarder(guestForwarder(cmd, done))
		runErr = cmd.Wait()
		close(done)
		clear()
	}
	code := 0
	var ee *agent.ExitError
	switch {
	case runErr != nil && cctx.Err() != nil && ctx.Err() == nil:
		// The agent killed it at the deadline (Wait then reports the kill).
		runErr = fmt.Errorf("%s did not finish within -timeout %s", filepath.Base(binary), *timeout)
	case errors.As(runErr, &ee):
		code = ee.ExitCode()
		if sig := ee.ProcessState.Signal(); sig != "" {
			fmt.Fprintf(stderr, "vmexec: %s killed by %s\n", filepath.Base(binary), sig)
			code = 128 + signalNumber(sig)
		}
		runErr = nil
	}
	// Writes to the shared directories go straight to the host (no
	// writeback cache), and everything else lives in the guest's tmpfs:
	// after a sync, QEMU can stop at once, without the guest's power-off.
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	if err := c.Sync(sctx); err != nil {
		progress("sync before stopping the guest: %v", err)
	}
	vm.Kill()
	progress("done, exit code %d", code)
	if runErr != nil {
		return runErr
	}
	if code != 0 {
		return exitError{code}
	}
	return nil
}

// executableArch is the GOARCH of the Linux executable at path.
func executableArch(path string) (string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return "", fmt.Errorf("%s is not a Linux executable: %w", path, err)
	}
	defer f.Close()
	if a, ok := archfacts.ByELF(f.Machine); ok {
		return a.GOARCH, nil
	}
	return "", fmt.Errorf("%s is built for %s; the bundled kernels are %s", path, f.Machine, strings.Join(archfacts.Names(), " and "))
}

// vmexecFlags are the flags that set each microvm.Config field.
var vmexecFlags = map[string]string{
	"Accel": "-kvm", "Kernel": "-kernel",
	"Append": "-append", "Sharing": "-share",
}

// vmexecConfigError names the flag or the directory of a Config field
// that microvm refused.
func vmexecConfigError(err error, binds []bindMount) error {
	var ce *microvm.ConfigError
	if !errors.As(err, &ce) {
		return err
	}
	field, index, _ := strings.Cut(ce.Field, "[")
	switch field {
	case "Shares":
		i, _ := strconv.Atoi(strings.TrimSuffix(index, "]"))
		if i < len(binds) {
			return fmt.Errorf("cannot share %s with the guest: %w", binds[i].host, ce.Err)
		}
	case "ShareRoot":
		return fmt.Errorf("cannot share / with the guest: %w", ce.Err)
	}
	if flag, ok := vmexecFlags[field]; ok {
		return fmt.Errorf("%s: %w", flag, ce.Err)
	}
	return err
}

// bindMount is a host directory shown in the guest.
type bindMount struct {
	host, guest string
	rw          bool
}

// parseBindMount parses HOST[:GUEST][:rw|:ro].
func parseBindMount(s string) (bindMount, error) {
	p := strings.Split(s, ":")
	b := bindMount{host: p[0], guest: p[0]}
	rest := p[1:]
	if len(rest) > 0 && rest[len(rest)-1] == "rw" || len(rest) > 0 && rest[len(rest)-1] == "ro" {
		b.rw = rest[len(rest)-1] == "rw"
		rest = rest[:len(rest)-1]
	}
	if len(rest) == 1 {
		b.guest = rest[0]
	} else if len(rest) > 1 {
		return b, fmt.Errorf("-mount %q: want HOST[:GUEST][:rw]", s)
	}
	if !filepath.IsAbs(b.host) || !filepath.IsAbs(b.guest) {
		return b, fmt.Errorf("-mount %q: paths must be absolute", s)
	}
	if st, err := os.Stat(b.host); err != nil || !st.IsDir() {
		return b, fmt.Errorf("-mount %q: %s is not a directory", s, b.host)
	}
	b.host, b.guest = filepath.Clean(b.host), filepath.Clean(b.guest)
	return b, nil
}

// goBuildDir says whether dir is where the go command builds and runs
// binaries: under GOTMPDIR, or the temporary directory.
func goBuildDir(dir string) bool {
	if t := os.Getenv("GOTMPDIR"); t != "" && within(dir, t) {
		return true
	}
	return within(dir, os.TempDir())
}

func within(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// guestEnv is env without the variables that mean nothing in the guest.
func guestEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(guestEnvDrop, k) {
			out = append(out, kv)
		}
	}
	return out
}

// loadVMExecConfig reads the settings file found from the working
// directory upwards, stopping at the first directory holding go.mod's
// repository root (.git) or the file itself.
func loadVMExecConfig() (vmexecConfig, string, error) {
	var c vmexecConfig
	dir, err := os.Getwd()
	if err != nil {
		return c, "", err
	}
	for {
		p := filepath.Join(dir, vmexecConfigFile)
		if _, err := os.Stat(p); err == nil {
			md, err := toml.DecodeFile(p, &c)
			if err != nil {
				return c, p, fmt.Errorf("%w", err)
			}
			if und := md.Undecoded(); len(und) > 0 {
				return c, p, fmt.Errorf("%s: unknown setting %q (memory, cpus, append, mounts, net, kvm, kernel, timeout, root, share)", p, und[0].String())
			}
			return c, p, nil
		}
		if _, err := os.Stat(filepath.Join(dir, ".git")); err == nil {
			return c, "", nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return c, "", nil
		}
		dir = parent
	}
}
