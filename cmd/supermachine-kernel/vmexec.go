package main

import (
	"cmp"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/supermachine-go/supermachine-kernel/agent"
	"github.com/supermachine-go/supermachine-kernel/initramfs"
	"github.com/supermachine-go/supermachine-kernel/internal/guestassets"
	"github.com/supermachine-go/supermachine-kernel/internal/lifetime"
	"github.com/supermachine-go/supermachine-kernel/internal/poll"
	"github.com/supermachine-go/supermachine-kernel/internal/qemu"
	"github.com/supermachine-go/supermachine-kernel/internal/tail"
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

// vmexecShareTag is the virtio-fs or 9p tag of the host's root in the
// guest.
const vmexecShareTag = "supermachine-host"

// vmexec9POptions are the mount options of a writable 9p share: the
// kernel's and QEMU's 9P2000.L, 512 KiB messages (the default 128 KiB
// costs round trips on a test binary's read), and the page cache for
// mmap only, so that every read and write reaches the host at once.
const vmexec9POptions = "trans=virtio,version=9p2000.L,msize=524288,cache=mmap"

func cmdVMExec(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("vmexec", "[flags] [--] BINARY [ARG...]\n\nruns a Linux executable (e.g. a Go test binary: go test -exec 'supermachine-kernel vmexec --')\nin a microVM of the bundled kernel for the binary's arch, as the invoking user (-root: as root\nin the guest), with the host's files visible read-only and the working directory writable;\nexits with its exit code.\nSettings also come from "+vmexecConfigFile+" at the repository root", stderr)
	cfg, cfgPath, err := loadVMExecConfig()
	if err != nil {
		return err
	}
	mem := fs.Int("mem", cmp.Or(cfg.Memory, 1024), fmt.Sprintf("guest memory in MiB (amd64: %d to %d; arm64: %d to %d)",
		qemu.LimitsFor("amd64").MinMemoryMiB, qemu.LimitsFor("amd64").MaxMemoryMiB, qemu.LimitsFor("arm64").MinMemoryMiB, qemu.LimitsFor("arm64").MaxMemoryMiB))
	cpus := fs.Int("cpus", cmp.Or(cfg.CPUs, min(2, runtime.NumCPU())), fmt.Sprintf("virtual CPUs (amd64: 1 to %d; arm64: 1 to %d)", qemu.LimitsFor("amd64").MaxCPUs, qemu.LimitsFor("arm64").MaxCPUs))
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
	arch, err := elfArch(binary)
	if err != nil {
		return err
	}
	lim := qemu.LimitsFor(arch)
	if err := lim.CheckMemory(*mem, *kernelFlag == ""); err != nil {
		return fmt.Errorf("vmexec: -mem (%s guest): %w", arch, err)
	}
	if err := lim.CheckCPUs(*cpus); err != nil {
		return fmt.Errorf("vmexec: -cpus (%s guest): %w", arch, err)
	}
	if *kernelFlag != "" {
		if _, err := os.Stat(*kernelFlag); err != nil {
			return fmt.Errorf("vmexec: -kernel: %w", err)
		}
		if ka := qemu.KernelArch(*kernelFlag); ka != "" && ka != arch {
			return fmt.Errorf("vmexec: -kernel: %s is a kernel for %s, not for the %s guest %s needs", *kernelFlag, ka, arch, filepath.Base(binary))
		}
	}
	cwd, err := os.Getwd()
	if err != nil {
		return err
	}
	// The working directory and the binary's directory (go test writes
	// coverage and other outputs there) are writable in the guest;
	// everything else of the host is read-only.
	binds := []bindMount{{host: cwd, guest: cwd, rw: true}}
	if d := filepath.Dir(binary); !within(d, cwd) {
		binds = append(binds, bindMount{host: d, guest: d, rw: true})
	}
	for _, m := range mounts {
		b, err := parseBindMount(m)
		if err != nil {
			return err
		}
		binds = append(binds, b)
	}
	var use9P bool
	switch *share {
	case "auto":
		use9P = os.Geteuid() != 0 || virtiofsdBinary() == ""
	case "9p", "virtiofs":
		use9P = *share == "9p"
	default:
		return fmt.Errorf("vmexec: -share %q: want auto, virtiofs or 9p", *share)
	}
	for _, b := range binds {
		if err := checkShareable(b.host); err != nil {
			return err
		}
	}
	// The binds go in a per-boot initramfs segment, which carries any
	// path (the kernel command line cannot carry blanks or colons).
	// Read-only ones are binds of the root share; over 9p, whose root
	// export is read-only on the host, writable ones are shares of their
	// own.
	var shared initramfs.Settings
	var shares9P []qemu.Share9P
	for _, b := range binds {
		if use9P && b.rw {
			tag := fmt.Sprintf("supermachine-rw%d", len(shares9P))
			shares9P = append(shares9P, qemu.Share9P{Tag: tag, Path: b.host})
			shared.Mounts = append(shared.Mounts, initramfs.Mount{Source: tag, Target: b.guest, FSType: "9p", Options: vmexec9POptions})
			continue
		}
		shared.Mounts = append(shared.Mounts, initramfs.Mount{Source: "/lower" + b.host, Target: b.guest, FSType: "bind"})
	}
	appendList := strings.Fields(*appendArgs)

	set, err := guestassets.For(arch)
	if err != nil {
		return err
	}
	progress("preparing the %s kernel and initramfs", arch)
	kernelPath, kernelSHA := *kernelFlag, ""
	if kernelPath == "" {
		if kernelPath, err = cachedKernel(ctx, set); err != nil {
			return err
		}
		kernelSHA = set.Kernel.SHA256
	}
	rootFSType := "virtiofs"
	if use9P {
		rootFSType = "9p"
	}
	initrd, err := cachedInitramfs(ctx, initramfs.Options{Settings: initramfs.Settings{Root: vmexecShareTag, RootFSType: rootFSType}}, set)
	if err != nil {
		return err
	}

	dir, err := lifetime.MkdirTemp("vmexec")
	if err != nil {
		return err
	}
	defer lifetime.RemoveTemp(dir)
	if initrd, err = withSegment(initrd, dir, shared); err != nil {
		return err
	}
	qcfg := qemu.Config{
		Arch: arch, Kernel: kernelPath, KernelSHA256: kernelSHA, Initrd: initrd,
		Append: appendList, MemoryMiB: *mem, CPUs: *cpus, KVM: *kvm, Net: *net,
		AgentSocket: filepath.Join(dir, "agent.sock"),
		Progress:    func(msg string) { progress("%s", msg) },
	}
	fsd := &virtiofsd{} // none over 9p: QEMU serves the files itself
	if use9P {
		// The root export is read-only on the host; the guest's
		// overlay takes its writes.
		qcfg.Shares9P = append([]qemu.Share9P{{Tag: vmexecShareTag, Path: "/", ReadOnly: true}}, shares9P...)
	} else {
		if err := checkSocketDir(dir, "virtiofsd.sock"); err != nil {
			return err
		}
		progress("starting virtiofsd")
		if fsd, err = startVirtiofsd(ctx, dir, binds, logw); err != nil {
			return err
		}
		defer fsd.stop()
		qcfg.ExtraArgs = []string{
			// virtio-fs needs the guest memory shared with virtiofsd.
			"-object", fmt.Sprintf("memory-backend-memfd,id=mem,size=%dM,share=on", *mem),
			"-machine", "memory-backend=mem",
			// vhost-user devices need virtio 1.0; QEMU's virtio-mmio
			// defaults to the legacy interface.
			"-global", "virtio-mmio.force-legacy=false",
			"-chardev", "socket,id=hostfs,path=" + qemu.OptValue(fsd.socket),
			"-device", "vhost-user-fs-device,chardev=hostfs,tag=" + vmexecShareTag,
		}
	}
	if *verbose {
		qcfg.Console, qcfg.Stderr = stderr, stderr
		qcfg.Trace = func(argv []string) { progress("%s", shellQuote(argv)) }
	}
	vm, c, err := qemu.Boot(ctx, qcfg)
	if err != nil {
		return fmt.Errorf("%w%s", err, fsd.messages())
	}
	defer vm.Kill()
	defer c.Close()
	progress("agent ready %s after QEMU started; running %s", time.Since(vm.Started()).Round(time.Millisecond), filepath.Base(binary))

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
	// Writes to the shared directories go straight to virtiofsd (no
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

// elfArch is the GOARCH of the Linux executable at path.
func elfArch(path string) (string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return "", fmt.Errorf("vmexec: %s is not a Linux executable: %w", path, err)
	}
	defer f.Close()
	switch f.Machine {
	case elf.EM_X86_64:
		return "amd64", nil
	case elf.EM_AARCH64:
		return "arm64", nil
	}
	return "", fmt.Errorf("vmexec: %s is built for %s; the bundled kernels are amd64 and arm64", path, f.Machine)
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

// checkShareable says which directory cannot be shared with the guest:
// one the invoking user cannot read and enter (QEMU's 9p server and
// virtiofsd read it as that user or need its listing), or one whose path
// QEMU cannot take.
func checkShareable(dir string) error {
	if strings.ContainsRune(dir, 0) {
		return fmt.Errorf("vmexec: cannot share %q: a path with a NUL byte", dir)
	}
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("vmexec: cannot share %s with the guest: %w", dir, err)
	}
	defer f.Close()
	if _, err := f.Readdirnames(1); err != nil && err != io.EOF {
		return fmt.Errorf("vmexec: cannot share %s with the guest: %w", dir, err)
	}
	return nil
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
				return c, p, fmt.Errorf("vmexec: %w", err)
			}
			if und := md.Undecoded(); len(und) > 0 {
				return c, p, fmt.Errorf("vmexec: %s: unknown setting %q (memory, cpus, append, mounts, net, kvm, kernel, timeout, root, share)", p, und[0].String())
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

// virtiofsd is a running virtio-fs daemon sharing the host's files.
type virtiofsd struct {
	socket string
	cmd    *exec.Cmd
	out    *tail.Lines // its last messages, for error reports
	done   chan struct{}
}

// virtiofsdPaths are where Debian and other distributions put virtiofsd.
var virtiofsdPaths = []string{"/usr/lib/qemu/virtiofsd", "/usr/libexec/virtiofsd", "/usr/lib/virtiofsd"}

// virtiofsdBinary is the path of virtiofsd, or "" if it is not installed.
func virtiofsdBinary() string {
	for _, p := range virtiofsdPaths {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("virtiofsd"); err == nil {
		return p
	}
	return ""
}

// startVirtiofsd starts virtiofsd on a view of the host's root that is
// read-only except for the writable binds, made in a mount namespace of
// its own by this program's hidden vmexec-virtiofsd command.
func startVirtiofsd(ctx context.Context, dir string, binds []bindMount, logw io.Writer) (*virtiofsd, error) {
	bin := virtiofsdBinary()
	if bin == "" {
		return nil, errors.New("vmexec: virtiofsd not found (Debian: apt-get install qemu-system-common, or the virtiofsd package; or -share 9p)")
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("vmexec: -share virtiofs needs root (virtiofsd and the read-only view of / use mount namespaces): run as root, or share over 9p (-share auto or 9p), which needs no privilege")
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	view := filepath.Join(dir, "view")
	if err := os.Mkdir(view, 0o700); err != nil {
		return nil, err
	}
	d := &virtiofsd{socket: filepath.Join(dir, "virtiofsd.sock"), out: tail.New(virtiofsdLines, logw), done: make(chan struct{})}
	args := []string{"vmexec-virtiofsd", "-socket", d.socket, "-view", view, "-virtiofsd", bin}
	for _, b := range binds {
		if b.rw {
			args = append(args, "-rw", b.host)
		}
	}
	d.cmd = exec.CommandContext(ctx, self, args...)
	d.cmd.Stdout = d.out
	d.cmd.Stderr = d.out
	if err := lifetime.Start(d.cmd); err != nil {
		return nil, fmt.Errorf("vmexec: starting virtiofsd: %w", err)
	}
	go func() {
		d.cmd.Wait()
		close(d.done)
	}()
	// virtiofsd creates its socket within milliseconds; 10 s covers a
	// loaded machine.
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err = poll.Until(wctx, poll.Fast, "virtiofsd's socket "+d.socket, func() (bool, error) {
		select {
		case <-d.done:
			return false, poll.Stop(fmt.Errorf("vmexec: virtiofsd exited at once:\n%s", d.out))
		default:
		}
		_, err := os.Stat(d.socket)
		return err == nil, nil
	})
	if err != nil {
		d.stop()
		if _, ok := err.(*poll.Error); ok {
			return nil, fmt.Errorf("vmexec: %w:\n%s", err, d.out)
		}
		return nil, err
	}
	return d, nil
}

// virtiofsdLines is how many of virtiofsd's last lines vmexec keeps for
// its error reports.
const virtiofsdLines = 20

func (d *virtiofsd) messages() string {
	if d.out == nil {
		return ""
	}
	s := strings.TrimSpace(d.out.String())
	if s == "" {
		return ""
	}
	return "\n--- virtiofsd said ---\n" + s
}

func (d *virtiofsd) stop() {
	d.cmd.Process.Kill()
	<-d.done
}
