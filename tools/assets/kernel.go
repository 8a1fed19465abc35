package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"time"

	"github.com/supermachine-go/supermachine-kernel/internal/atomicfile"
)

// kernelArch is what differs between the arches in a kernel build.
type kernelArch struct {
	makeArch, cross, image, format string
	// storedPayload: the bzImage payload is made by tools/lz4stored, an
	// LZ4 stream of literals only (see tools/kernel/POLICY.md).
	storedPayload bool
}

var kernelArches = map[string]kernelArch{
	"amd64": {makeArch: "x86_64", image: "arch/x86/boot/bzImage", format: "bzImage", storedPayload: true},
	"arm64": {makeArch: "arm64", cross: "aarch64-linux-gnu-", image: "arch/arm64/boot/Image", format: "Image"},
}

// kernelSource returns the extracted source tree: the pinned Debian
// linux-source package's tarball, or -kernel-tarball with its SHA-256.
func (p *pipeline) kernelSource(ctx context.Context) (string, error) {
	if p.kernelSrc != "" {
		return p.kernelSrc, nil
	}
	tarball, sum := p.opts.kernelTarball, p.opts.kernelSHA256
	dest := filepath.Join(p.work, "linux-source-6.12")
	if tarball == "" {
		var err error
		tarball, err = p.debianKernelTarball(ctx)
		if err != nil {
			return "", err
		}
		sum = p.pins.Kernel.TarballSHA256
	} else {
		got, err := fileSHA256(tarball)
		if err != nil {
			return "", err
		}
		if got != sum {
			return "", fmt.Errorf("kernel tarball %s has SHA-256 %s, -kernel-sha256 says %s", tarball, got, sum)
		}
		dest = filepath.Join(p.work, "linux-"+sum[:12])
	}
	stamp := filepath.Join(dest, ".supermachine-source-sha256")
	if b, err := os.ReadFile(stamp); err == nil && strings.TrimSpace(string(b)) == sum {
		p.kernelSrc = dest
		return dest, nil
	}
	logf("extracting %s to %s", tarball, dest)
	tmp := dest + ".tmp"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return "", err
	}
	if err := runCmd(ctx, "", nil, "tar", "-xf", tarball, "-C", tmp, "--strip-components=1"); err != nil {
		return "", err
	}
	if err := checkKernelTree(tmp); err != nil {
		return "", fmt.Errorf("%s: %w", tarball, err)
	}
	if err := os.WriteFile(filepath.Join(tmp, ".supermachine-source-sha256"), []byte(sum+"\n"), 0o644); err != nil {
		return "", err
	}
	os.RemoveAll(dest)
	if err := os.Rename(tmp, dest); err != nil {
		return "", err
	}
	p.kernelSrc = dest
	return dest, nil
}

// checkKernelTree refuses anything but a Linux 6.12 tree.
func checkKernelTree(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, "Makefile"))
	if err != nil {
		return fmt.Errorf("not a kernel source tarball (no top-level Makefile): %w", err)
	}
	if !bytes.Contains(b, []byte("\nVERSION = 6\n")) || !bytes.Contains(b, []byte("\nPATCHLEVEL = 12\n")) {
		return fmt.Errorf("not a Linux 6.12 source tree (Makefile VERSION/PATCHLEVEL)")
	}
	return nil
}

// debianKernelTarball returns the pinned linux-source tarball, from the
// installed package when it is the pinned one, else from the downloaded .deb.
func (p *pipeline) debianKernelTarball(ctx context.Context) (string, error) {
	k := p.pins.Kernel
	installed := filepath.Join("/", k.TarballInPackage)
	if sum, err := fileSHA256(installed); err == nil && sum == k.TarballSHA256 {
		return installed, nil
	}
	tarball := filepath.Join(p.work, "dl", fmt.Sprintf("%s_%s.tar.xz", k.DebianPackage, k.Version))
	if sum, err := fileSHA256(tarball); err == nil && sum == k.TarballSHA256 {
		return tarball, nil
	}
	deb, err := p.aptDownload(ctx, k.DebianPackage, "all", k.Version)
	if err != nil {
		return "", err
	}
	logf("unpacking %s from %s", k.TarballInPackage, deb)
	if err := extractFromDeb(ctx, deb, k.TarballInPackage, tarball); err != nil {
		return "", err
	}
	sum, err := fileSHA256(tarball)
	if err != nil {
		return "", err
	}
	if sum != k.TarballSHA256 {
		return "", fmt.Errorf("%s from %s %s has SHA-256 %s, tools/pins.json pins %s",
			k.TarballInPackage, k.DebianPackage, k.Version, sum, k.TarballSHA256)
	}
	return tarball, nil
}

func (p *pipeline) buildKernel(ctx context.Context, arch string) (*built, error) {
	ka := kernelArches[arch]
	src, err := p.kernelSource(ctx)
	if err != nil {
		return nil, err
	}
	obj := filepath.Join(p.work, "kernel-"+arch)
	if p.opts.clean {
		obj += "-clean"
		if err := os.RemoveAll(obj); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(obj, 0o755); err != nil {
		return nil, err
	}

	// The config: fragments applied on allnoconfig, then olddefconfig,
	// written beside the real .config so an unchanged config leaves the
	// tree untouched (and the rebuild incremental).
	frag := filepath.Join(obj, "supermachine-fragment.config")
	var fb bytes.Buffer
	for _, f := range []string{"common.config", arch + ".config"} {
		b, err := os.ReadFile(filepath.Join(p.root, "tools", "kernel", f))
		if err != nil {
			return nil, err
		}
		fb.Write(b)
		fb.WriteByte('\n')
	}
	if err := os.WriteFile(frag, fb.Bytes(), 0o644); err != nil {
		return nil, err
	}
	base := []string{"-C", src, "O=" + obj, "ARCH=" + ka.makeArch}
	if ka.cross != "" {
		base = append(base, "CROSS_COMPILE="+ka.cross)
	}
	base = append(base, hostToolVars...)
	newCfg := filepath.Join(obj, ".config.supermachine")
	cfgEnv := append(p.kernelEnv(), "KCONFIG_CONFIG="+newCfg, "KCONFIG_ALLCONFIG="+frag)
	logf("%s kernel: configuring (allnoconfig + tools/kernel/common.config + tools/kernel/%s.config)", arch, arch)
	for _, target := range []string{"allnoconfig", "olddefconfig"} {
		if err := runCmdEnv(ctx, "", cfgEnv, "make", append(append([]string{}, base...), "-s", target)...); err != nil {
			return nil, fmt.Errorf("make %s: %w", target, err)
		}
	}
	cfg, err := os.ReadFile(newCfg)
	if err != nil {
		return nil, err
	}
	if missing := missingOptions(fb.String(), string(cfg)); len(missing) > 0 {
		return nil, fmt.Errorf("the kernel configuration lost %d wanted option(s); Kconfig drops options whose dependencies are missing:\n  %s",
			len(missing), strings.Join(missing, "\n  "))
	}
	if err := checkHostProbes(string(cfg)); err != nil {
		return nil, fmt.Errorf("%s kernel configuration: %w", arch, err)
	}
	if err := checkDockerConfig(string(cfg)); err != nil {
		return nil, fmt.Errorf("%s kernel configuration: %w", arch, err)
	}
	// Rewritten only when it changed, so that make rebuilds only then.
	cur, _ := os.ReadFile(filepath.Join(obj, ".config"))
	if !bytes.Equal(cur, cfg) {
		if err := atomicfile.WriteFile(ctx, filepath.Join(obj, ".config"), cfg, 0o644); err != nil {
			return nil, err
		}
	}

	jobs := p.opts.jobs
	if jobs <= 0 {
		jobs = runtime.NumCPU()
	}
	args := append(append([]string{}, base...), fmt.Sprintf("-j%d", jobs), filepath.Base(ka.image))
	if ka.storedPayload {
		tool, err := p.buildLZ4Stored(ctx)
		if err != nil {
			return nil, err
		}
		args = append(args, "LZ4="+tool)
	}
	cc := ka.cross + "gcc"
	env := p.kernelEnv()
	if _, err := exec.LookPath("ccache"); err == nil && !p.opts.clean {
		args = append(args, "CC=ccache "+cc)
		env = append(env, "CCACHE_DIR="+filepath.Join(p.work, "ccache"))
	} else {
		args = append(args, "CC="+cc)
	}
	logPath := filepath.Join(p.work, "kernel-"+arch+".log")
	logf("%s kernel: make %s (log: %s)", arch, filepath.Base(ka.image), logPath)
	start := time.Now()
	if err := runLogged(ctx, logPath, env, fmt.Sprintf("%s kernel", arch), "make", args...); err != nil {
		return nil, err
	}
	logf("%s kernel: built in %s", arch, time.Since(start).Round(time.Second))

	release, err := os.ReadFile(filepath.Join(obj, "include", "config", "kernel.release"))
	if err != nil {
		return nil, err
	}
	raw := filepath.Join(p.outDir(arch), "kernel")
	if err := copyFile(filepath.Join(obj, ka.image), raw); err != nil {
		return nil, err
	}
	builder, err := toolchain(ctx, string(cfg), ka.cross+"ld")
	if err != nil {
		return nil, err
	}
	k := p.pins.Kernel
	source := fmt.Sprintf("Debian %s %s (tarball sha256 %s)", k.DebianPackage, k.Version, k.TarballSHA256)
	if p.opts.kernelTarball != "" {
		source = fmt.Sprintf("%s (sha256 %s)", filepath.Base(p.opts.kernelTarball), p.opts.kernelSHA256)
	}
	return &built{
		name:    "kernel",
		path:    raw,
		version: strings.TrimSpace(string(release)),
		source:  source,
		format:  ka.format,
		builder: builder,
		config:  filepath.Join(obj, ".config"),
	}, nil
}

// kernelEnv is the whole environment of the kernel's make. Of the host's
// environment only PATH and TMPDIR pass: a host's LLVM=1, CC, LD,
// CROSS_COMPILE, KCFLAGS or MAKEFLAGS would change the kernel. The rest
// fixes what the build would otherwise take from the clock, the user or
// the host.
func (p *pipeline) kernelEnv() []string {
	var env []string
	for _, name := range []string{"PATH", "TMPDIR"} {
		if v, ok := os.LookupEnv(name); ok {
			env = append(env, name+"="+v)
		}
	}
	epoch := p.pins.SourceDateEpoch
	return append(env,
		"KBUILD_BUILD_TIMESTAMP="+time.Unix(epoch, 0).UTC().Format(time.UnixDate),
		"KBUILD_BUILD_USER=supermachine",
		"KBUILD_BUILD_HOST=supermachine",
		"KBUILD_BUILD_VERSION=1",
		fmt.Sprintf("SOURCE_DATE_EPOCH=%d", epoch),
		"LC_ALL=C",
		"TZ=UTC",
	)
}

// buildLZ4Stored builds tools/lz4stored, the bzImage payload's "compressor",
// into the work directory and returns its path.
func (p *pipeline) buildLZ4Stored(ctx context.Context) (string, error) {
	tool := filepath.Join(p.work, "bin", "lz4stored")
	if err := runCmd(ctx, p.root, []string{"CGO_ENABLED=0", "GOFLAGS="}, "go", "build", "-trimpath", "-o", tool, "./tools/lz4stored"); err != nil {
		return "", err
	}
	return tool, nil
}

var optionLine = regexp.MustCompile(`^(CONFIG_[A-Za-z0-9_]+=.*|# CONFIG_[A-Za-z0-9_]+ is not set)$`)

// missingOptions lists the fragment's assignments that the final config
// does not carry verbatim.
func missingOptions(fragment, config string) []string {
	have := map[string]bool{}
	for _, l := range strings.Split(config, "\n") {
		have[l] = true
	}
	var missing []string
	for _, l := range strings.Split(fragment, "\n") {
		l = strings.TrimSpace(l)
		if !optionLine.MatchString(l) || have[l] {
			continue
		}
		// "not set" is also satisfied by the option being absent.
		if strings.HasPrefix(l, "# ") {
			name := strings.Fields(l)[1]
			if !strings.Contains(config, "\n"+name+"=") {
				continue
			}
		}
		missing = append(missing, l)
	}
	return missing
}

// runLogged runs a long command in the environment env (the whole of it)
// with its output in a log file, printing a progress line every 15
// seconds and the log's tail when it fails. When ctx ends, the command
// and every process it started are killed.
func runLogged(ctx context.Context, logPath string, env []string, what, name string, args ...string) error {
	f, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	inProcessGroup(cmd)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	counted := make(chan int, 1)
	go func() {
		n := 0
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			fmt.Fprintln(f, sc.Text())
			if t := strings.TrimSpace(sc.Text()); strings.HasPrefix(t, "CC ") || strings.HasPrefix(t, "AS ") {
				n++
				select {
				case <-counted:
				default:
				}
				counted <- n
			}
		}
		io.Copy(io.Discard, pr)
	}()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait(); pw.Close() }()
	tick := time.NewTicker(15 * time.Second)
	defer tick.Stop()
	n := 0
	for {
		select {
		case err := <-done:
			if err != nil && ctx.Err() != nil {
				return fmt.Errorf("%s %s stopped: %w", name, strings.Join(args, " "), context.Cause(ctx))
			}
			if err != nil {
				tail, _ := tailFile(logPath, 30)
				return fmt.Errorf("%s %s failed: %w\n--- last lines of %s ---\n%s", name, strings.Join(args, " "), err, logPath, tail)
			}
			return nil
		case n = <-counted:
		case <-tick.C:
			logf("%s: %s elapsed, %d files compiled", what, time.Since(start).Round(time.Second), n)
		}
	}
}

func tailFile(path string, lines int) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	ls := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n"), nil
}
