package kernel_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/supermachine-go/supermachine-kernel/internal/reexec"
	"github.com/supermachine-go/supermachine-kernel/kernel"
)

// argVar carries a helper process's argument.
const argVar = "SUPERMACHINE_KERNEL_TEST_ARG"

func TestMain(m *testing.M) {
	switch os.Getenv(reexec.EnvVar) {
	case "":
		os.Exit(m.Run())
	case "cache-all":
		p, err := kernel.Cache{Dir: os.Getenv(argVar)}.All(context.Background())
		if err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Stdout.WriteString(p.Kernel + "\n" + p.Busybox + "\n" + p.Agent + "\n")
		os.Exit(0)
	case "extract-all", "idle":
		// Report the peak RSS of this process (VmHWM): the parent's
		// rusage would count the memory the child shared before exec.
		if os.Getenv(reexec.EnvVar) == "extract-all" {
			if _, err := kernel.ExtractAll(context.Background(), os.Getenv(argVar)); err != nil {
				os.Stderr.WriteString(err.Error() + "\n")
				os.Exit(1)
			}
		}
		status, _ := os.ReadFile("/proc/self/status")
		for _, line := range strings.Split(string(status), "\n") {
			if strings.HasPrefix(line, "VmHWM:") {
				os.Stdout.WriteString(line + "\n")
			}
		}
		os.Exit(0)
	default:
		os.Exit(2)
	}
}

var wantFile = map[string]map[string]string{
	"amd64": {"kernel": "bzImage", "busybox": "busybox", "agent": "supermachine-agent"},
	"arm64": {"kernel": "Image", "busybox": "busybox", "agent": "supermachine-agent"},
}

func TestConstants(t *testing.T) {
	if kernel.Arch != runtime.GOARCH {
		t.Errorf("Arch = %q, want %q", kernel.Arch, runtime.GOARCH)
	}
	for _, c := range []struct {
		a    *kernel.Asset
		mode fs.FileMode
	}{
		{kernel.Kernel, 0o644},
		{kernel.Busybox, 0o755},
		{kernel.Agent, 0o755},
	} {
		if c.a.Mode() != c.mode {
			t.Errorf("%s: Mode = %v, want %v", c.a, c.a.Mode(), c.mode)
		}
		if c.a.File() != wantFile[runtime.GOARCH][c.a.Name()] {
			t.Errorf("%s: File = %q", c.a, c.a.File())
		}
		if len(c.a.SHA256()) != 64 || c.a.Version() == "" {
			t.Errorf("%s: SHA256 %q, Version %q", c.a, c.a.SHA256(), c.a.Version())
		}
	}
	if got := kernel.Assets(); len(got) != 3 || got[0] != kernel.Kernel || got[1] != kernel.Busybox || got[2] != kernel.Agent {
		t.Errorf("Assets() = %v", got)
	}
}

func TestManifest(t *testing.T) {
	m := kernel.Manifest()
	if m.Arch != kernel.Arch || m.SourceDateEpoch != kernel.SourceDateEpoch {
		t.Errorf("Manifest: arch %q, epoch %d", m.Arch, m.SourceDateEpoch)
	}
	if m.Kernel != kernel.Kernel.Info() || m.Busybox != kernel.Busybox.Info() || m.Agent != kernel.Agent.Info() {
		t.Error("Manifest disagrees with Asset.Info")
	}
	if len(m.Kernel.ConfigSHA256) != 64 {
		t.Errorf("kernel config SHA-256 = %q", m.Kernel.ConfigSHA256)
	}
	// The generated constants say what manifest.json says.
	b, err := os.ReadFile(filepath.Join("..", "kernel-"+kernel.Arch, "manifest.json"))
	if err != nil {
		t.Skipf("skipping the comparison with manifest.json: %v", err)
	}
	var file map[string]json.RawMessage
	if err := json.Unmarshal(b, &file); err != nil {
		t.Fatal(err)
	}
	for _, info := range []kernel.AssetInfo{m.Kernel, m.Busybox, m.Agent} {
		var a struct {
			Size   int64  `json:"size"`
			SHA256 string `json:"sha256"`
			XZ     struct {
				Size   int64  `json:"size"`
				SHA256 string `json:"sha256"`
			} `json:"xz"`
			ConfigSHA256 string `json:"config_sha256"`
		}
		if err := json.Unmarshal(file[info.Name], &a); err != nil {
			t.Fatalf("%s: %v", info.Name, err)
		}
		// The exported length constants too (TestBytes checks Len
		// against the decoded bytes).
		if want := map[string]int64{"kernel": kernel.KernelLen, "busybox": kernel.BusyboxLen, "agent": kernel.AgentLen}[info.Name]; a.Size != want {
			t.Errorf("%s: manifest.json size %d, length constant %d", info.Name, a.Size, want)
		}
		if a.Size != info.Size || a.SHA256 != info.SHA256 || a.XZ.Size != info.XZSize || a.XZ.SHA256 != info.XZSHA256 || a.ConfigSHA256 != info.ConfigSHA256 {
			t.Errorf("%s: manifest.json %+v, Manifest() %+v", info.Name, a, info)
		}
	}
}

func TestBytes(t *testing.T) {
	for _, a := range kernel.Assets() {
		// Concurrent first calls: one decode, one slice for all.
		const n = 4
		got := make([][]byte, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				b, err := a.Bytes()
				if err != nil {
					t.Error(err)
				}
				got[i] = b
			})
		}
		wg.Wait()
		for i := range n {
			if len(got[i]) == 0 || &got[i][0] != &got[0][0] {
				t.Fatalf("%s: call %d returned another slice", a, i)
			}
		}
		if int64(len(got[0])) != a.Len() || sha(got[0]) != a.SHA256() {
			t.Errorf("%s: %d bytes, SHA-256 %s", a, len(got[0]), sha(got[0]))
		}
		if !bytes.HasPrefix(got[0], []byte("\x7fELF")) && a != kernel.Kernel {
			t.Errorf("%s is not an ELF file", a)
		}
	}
	for _, f := range []func() ([]byte, error){kernel.KernelBytes, kernel.BusyboxBytes, kernel.AgentBytes} {
		if b, err := f(); err != nil || len(b) == 0 {
			t.Errorf("seed-style Bytes: %d bytes, %v", len(b), err)
		}
	}
}

func TestNewReader(t *testing.T) {
	for _, a := range kernel.Assets() {
		r, err := a.NewReader()
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		n, err := io.Copy(h, r)
		if err != nil || n != a.Len() || hex.EncodeToString(h.Sum(nil)) != a.SHA256() {
			t.Errorf("%s: streamed %d bytes, %v", a, n, err)
		}
	}
}

func TestExtractTo(t *testing.T) {
	dir := t.TempDir()
	for _, a := range kernel.Assets() {
		p := filepath.Join(dir, a.File())
		if err := a.ExtractTo(p); err != nil {
			t.Fatal(err)
		}
		checkFile(t, p, a)
		p = filepath.Join(dir, "new-"+a.Name(), "parents", a.File())
		if err := a.ExtractTo(p); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: ExtractTo with a missing parent: %v", a, err)
		}
		if err := a.ExtractToWithParents(p); err != nil {
			t.Fatal(err)
		}
		checkFile(t, p, a)
	}
	seed := []struct {
		a            *kernel.Asset
		to, toParent func(string) error
	}{
		{kernel.Kernel, kernel.ExtractKernelTo, kernel.ExtractKernelToWithParents},
		{kernel.Busybox, kernel.ExtractBusyboxTo, kernel.ExtractBusyboxToWithParents},
		{kernel.Agent, kernel.ExtractAgentTo, kernel.ExtractAgentToWithParents},
	}
	for _, s := range seed {
		p := filepath.Join(dir, "seed-"+s.a.Name(), s.a.Name())
		if err := s.to(p); err == nil {
			t.Errorf("%s: seed-style ExtractTo without parent: no error", s.a)
		}
		if err := s.toParent(p); err != nil {
			t.Fatal(err)
		}
		checkFile(t, p, s.a)
		if err := s.to(p); err != nil { // replaces
			t.Fatal(err)
		}
		checkFile(t, p, s.a)
	}
}

func TestExtractErrors(t *testing.T) {
	dir := t.TempDir()
	d := filepath.Join(dir, "dir")
	os.Mkdir(d, 0o755)
	if err := kernel.Kernel.ExtractTo(d); !errors.Is(err, syscall.EISDIR) {
		t.Errorf("directory: %v", err)
	}
	link := filepath.Join(dir, "link")
	os.Symlink(filepath.Join(dir, "nowhere"), link)
	if err := kernel.Busybox.ExtractTo(link); !errors.Is(err, kernel.ErrSymlink) || !strings.Contains(err.Error(), "dangling") {
		t.Errorf("dangling symlink: %v", err)
	}
	var pe *fs.PathError
	if err := kernel.Busybox.ExtractTo(link); !errors.As(err, &pe) || pe.Path != link {
		t.Errorf("not an *fs.PathError naming %s: %v", link, err)
	}
}

// TestModifiedBytes checks that a caller who modifies the slice Bytes
// returned gets ErrChecksum instead of a wrong file.
func TestModifiedBytes(t *testing.T) {
	b, err := kernel.Busybox.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	b[1000] ^= 1
	defer func() { b[1000] ^= 1 }()
	dest := filepath.Join(t.TempDir(), "busybox")
	err = kernel.Busybox.ExtractTo(dest)
	var ce *kernel.ChecksumError
	if !errors.Is(err, kernel.ErrChecksum) || !errors.As(err, &ce) || ce.Name != "busybox" {
		t.Fatalf("err = %v, want a *ChecksumError", err)
	}
	if _, err := os.Lstat(dest); err == nil {
		t.Fatal("an unverified file was left at the destination")
	}
}

func TestExtractAll(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "assets") // created by ExtractAll
	p, err := kernel.ExtractAll(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	checkPaths(t, p, func(a *kernel.Asset) string { return filepath.Join(dir, a.File()) })

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := kernel.ExtractAll(ctx, t.TempDir()); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled: %v", err)
	}
}

func TestCache(t *testing.T) {
	root := t.TempDir()
	t.Setenv(kernel.CacheEnv, root)
	if d, err := kernel.DefaultCacheDir(); err != nil || d != root {
		t.Fatalf("DefaultCacheDir = %s, %v", d, err)
	}
	ctx := context.Background()
	inCache := func(a *kernel.Asset) string { return filepath.Join(root, a.SHA256(), a.File()) }
	p, err := kernel.CacheAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkPaths(t, p, inCache)
	// Warm: the same files, untouched.
	before, _ := os.Stat(p.Kernel)
	for _, c := range []kernel.Cache{{}, {Dir: root, Verify: true}} {
		p2, err := c.All(ctx)
		if err != nil || p2 != p {
			t.Fatalf("warm %+v: %+v, %v", c, p2, err)
		}
	}
	after, _ := os.Stat(p.Kernel)
	if !os.SameFile(before, after) {
		t.Error("the warm path rewrote the kernel")
	}
	for _, a := range kernel.Assets() {
		got, err := a.Cached(ctx)
		if err != nil || got != inCache(a) {
			t.Errorf("%s.Cached = %s, %v", a, got, err)
		}
	}
	// An explicit directory wins over the environment, and relative
	// directories give absolute paths.
	other := t.TempDir()
	t.Chdir(other)
	got, err := kernel.Cache{Dir: "rel"}.Path(ctx, kernel.Busybox)
	if want := filepath.Join(other, "rel", kernel.Busybox.SHA256(), "busybox"); err != nil || got != want {
		t.Errorf("Cache{Dir: rel}.Path = %s, %v; want %s", got, err, want)
	}
}

func TestDefaultCacheDir(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("XDG_CACHE_HOME is a Linux convention")
	}
	t.Setenv(kernel.CacheEnv, "")
	t.Setenv("XDG_CACHE_HOME", "/somewhere")
	if d, err := kernel.DefaultCacheDir(); err != nil || d != "/somewhere/supermachine-kernel" {
		t.Errorf("DefaultCacheDir = %s, %v", d, err)
	}
	t.Setenv("XDG_CACHE_HOME", "")
	t.Setenv("HOME", "")
	if _, err := kernel.DefaultCacheDir(); err == nil || !strings.Contains(err.Error(), kernel.CacheEnv) {
		t.Errorf("without HOME: %v, want an error naming %s", err, kernel.CacheEnv)
	}
}

// TestCacheAllProcesses runs CacheAll in several processes at once on one
// empty cache: all succeed with the same paths.
func TestCacheAllProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping several processes in short mode")
	}
	root := t.TempDir()
	const n = 4
	outs := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		cmd, err := reexec.Command("cache-all")
		if err != nil {
			t.Fatal(err)
		}
		cmd.Env = append(cmd.Env, argVar+"="+root)
		wg.Go(func() {
			out, err := cmd.Output()
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				t.Errorf("process %d: %s", i, ee.Stderr)
			}
			outs[i] = string(out)
		})
	}
	wg.Wait()
	for i := range n {
		if outs[i] != outs[0] {
			t.Errorf("process %d printed %q, process 0 %q", i, outs[i], outs[0])
		}
	}
	p, err := kernel.Cache{Dir: root, Verify: true}.All(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := p.Kernel + "\n" + p.Busybox + "\n" + p.Agent + "\n"; outs[0] != want {
		t.Errorf("processes printed %q, want %q", outs[0], want)
	}
}

// TestUnsupportedArch checks that a build for another GOARCH fails with a
// message that names the supported ones.
func TestUnsupportedArch(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("skipping: no go command in PATH")
	}
	for _, goarch := range []string{"riscv64", "386"} {
		cmd := exec.Command(goBin, "build", ".")
		cmd.Env = append(os.Environ(), "GOARCH="+goarch, "GOOS=linux", "CGO_ENABLED=0")
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Fatalf("GOARCH=%s: the build succeeded", goarch)
		}
		msg := strings.TrimSpace(string(out))
		if !strings.Contains(msg, "undefined: supermachine_kernel_supports_only_GOARCH_amd64_and_arm64") {
			t.Errorf("GOARCH=%s: build failed without the message:\n%s", goarch, msg)
		}
		// That is the only error: nothing else to distract.
		if lines := strings.Split(msg, "\n"); len(lines) != 2 {
			t.Errorf("GOARCH=%s: want 2 lines of output, got:\n%s", goarch, msg)
		}
		t.Logf("GOARCH=%s go build:\n%s", goarch, msg)
	}
}

func checkPaths(t *testing.T, p kernel.Paths, want func(*kernel.Asset) string) {
	t.Helper()
	for _, c := range []struct {
		a   *kernel.Asset
		got string
	}{{kernel.Kernel, p.Kernel}, {kernel.Busybox, p.Busybox}, {kernel.Agent, p.Agent}} {
		if c.got != want(c.a) {
			t.Errorf("%s at %s, want %s", c.a, c.got, want(c.a))
		}
		checkFile(t, c.got, c.a)
	}
}

// checkFile checks that path holds asset a with its mode.
func checkFile(t *testing.T, path string, a *kernel.Asset) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm() != a.Mode() || fi.Size() != a.Len() {
		t.Errorf("%s: mode %v size %d, want %v %d", path, fi.Mode(), fi.Size(), a.Mode(), a.Len())
	}
	b, err := os.ReadFile(path)
	if err != nil || sha(b) != a.SHA256() {
		t.Errorf("%s: content does not verify (%v)", path, err)
	}
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
