package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/supermachine-go/supermachine-kernel/internal/qemu"
	"github.com/supermachine-go/supermachine-kernel/kernel"
)

// Bad flag values are refused before QEMU starts, naming the flag and
// what it takes.
func TestBadFlagsRefused(t *testing.T) {
	lim := qemu.LimitsFor(kernel.Arch)
	notImage := filepath.Join(t.TempDir(), "not-an-image")
	os.WriteFile(notImage, []byte("hello"), 0o644)
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"boot", "-mem", "0", "--", "true"}, "-mem: 0 MiB is out of range"},
		{[]string{"boot", "-mem", "16", "--", "true"}, "-mem: 16 MiB is out of range"},
		{[]string{"boot", "-mem", "16", "--", "true"}, "MiB is the least the bundled kernel and initramfs boot in"},
		{[]string{"boot", "-cpus", "0", "--", "true"}, "-cpus: 0 virtual CPUs is out of range: want 1 to"},
		{[]string{"boot", "-root", "/nonexistent", "--", "true"}, "-root: stat /nonexistent"},
		{[]string{"boot", "-root", notImage, "--", "true"}, "-root: " + notImage + " is neither a squashfs nor"},
		{[]string{"boot", "-root", fifo, "--", "true"}, "-root: " + fifo + " is not a directory, an image file or a block device"},
		{[]string{"vmexec", "-kernel", "/nonexistent/bzImage", "--", "/bin/true"}, "-kernel: open /nonexistent/bzImage: no such file"},
		{[]string{"vmexec", "-mem", "16", "--", "/bin/true"}, "-mem (" + kernel.Arch + " guest): 16 MiB is out of range"},
		{[]string{"vmexec", "-cpus", "0", "--", "/bin/true"}, "-cpus (" + kernel.Arch + " guest): 0 virtual CPUs"},
		{[]string{"exec", "-connect", "unix:/x", "-connect-timeout", "0s", "--", "true"}, "-connect-timeout 0s: want a positive duration"},
	} {
		start := time.Now()
		code, _, errs := runCLI(t, tc.args...)
		if code != 1 || !strings.Contains(errs, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want exit 1 and %q", tc.args, code, errs, tc.want)
		}
		if strings.Contains(errs, "booting") || time.Since(start) > 5*time.Second {
			t.Errorf("%q: QEMU was started before the refusal:\n%s", tc.args, errs)
		}
	}
	if lim.MinMemoryMiB < 32 || lim.MinMemoryMiB > 256 {
		t.Errorf("minimum memory %d MiB: not a measured figure", lim.MinMemoryMiB)
	}
}

// A TMPDIR too deep for the sockets made in it is refused by name, and
// nothing is left in it.
func TestLongTMPDIRRefused(t *testing.T) {
	long := filepath.Join(t.TempDir(), strings.Repeat("d", 100))
	if err := os.Mkdir(long, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TMPDIR", long)
	code, _, errs := runCLI(t, "boot", "--", "true")
	if code != 1 || !strings.Contains(errs, "TMPDIR "+long+" is too long") {
		t.Errorf("exit %d, stderr %q", code, errs)
	}
	if ents, _ := os.ReadDir(long); len(ents) != 0 {
		t.Errorf("left in TMPDIR: %v", ents)
	}
}

// exec -connect to an agent that accepts the connection and never
// answers (a paused guest) gives up after -connect-timeout, saying what
// did not answer.
func TestExecConnectTimeout(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "silent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	start := time.Now()
	code, _, errs := runCLI(t, "exec", "-connect", "unix:"+sock, "-connect-timeout", "500ms", "--", "true")
	took := time.Since(start)
	if code != 1 || !strings.Contains(errs, "the agent at unix:"+sock+" did not answer within 500ms (-connect-timeout)") {
		t.Errorf("exit %d, stderr %q", code, errs)
	}
	if took > 5*time.Second {
		t.Errorf("gave up after %s, want about 500ms", took)
	}
	if !strings.Contains(connectFlagDefault(t), defaultConnectTimeout.String()) {
		t.Errorf("exec -h does not document the default %s", defaultConnectTimeout)
	}
}

func connectFlagDefault(t *testing.T) string {
	_, _, errs := runCLI(t, "exec", "-h")
	_, after, _ := strings.Cut(errs, "-connect-timeout")
	text, _, _ := strings.Cut(after, "\n  -")
	return text
}

// QEMU exiting before the guest prints anything: the error says what is
// the likely cause when QEMU said nothing, and -v shows the command line.
func TestBootFailureReasons(t *testing.T) {
	if testing.Short() {
		t.Skip("starts QEMU")
	}
	bin, pkg, _ := qemu.Binary(kernel.Arch)
	if _, err := exec.LookPath(bin); err != nil {
		t.Fatalf("%s not installed: apt-get install %s", bin, pkg)
	}
	// A kernel of the other arch is refused before QEMU starts.
	other := map[string]string{"amd64": "arm64", "arm64": "amd64"}[kernel.Arch]
	dir := t.TempDir()
	img := filepath.Join(dir, "Image")
	hdr := make([]byte, 0x210)
	if other == "arm64" {
		copy(hdr[0x38:], "ARM\x64")
	} else {
		copy(hdr[0x202:], "HdrS")
	}
	os.WriteFile(img, hdr, 0o644)
	code, _, errs := runCLI(t, "vmexec", "-kernel", img, "--", "/bin/true")
	if errVMExecUnsupported == nil && (code != 1 || !strings.Contains(errs, "-kernel: "+img+" is a kernel for "+other+", not for this "+kernel.Arch+" guest")) {
		t.Errorf("kernel of the other arch: exit %d, stderr:\n%s", code, errs)
	}
	// A kernel QEMU loads and that dies before its console: QEMU says
	// nothing, the error gives the likely cause.
	junk := filepath.Join(dir, "junk")
	os.WriteFile(junk, []byte(strings.Repeat("not a kernel\n", 100)), 0o644)
	cfg := qemu.Config{Kernel: junk, MemoryMiB: 64, KVM: "off"}
	var traced []string
	cfg.Trace = func(argv []string) { traced = argv }
	_, err := qemu.Start(t.Context(), cfg)
	if err == nil || !strings.Contains(err.Error(), "likely cause") && !strings.Contains(err.Error(), "QEMU said") {
		t.Errorf("junk kernel: %v", err)
	}
	if len(traced) == 0 || traced[0] != bin {
		t.Errorf("Trace got %q", traced)
	}
	t.Logf("junk kernel: %v", err)
	// The bundled kernel and initramfs in too little memory: QEMU exits
	// without a word; the error names the memory.
	k, err := kernel.Kernel.Cached(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	_, err = qemu.Start(t.Context(), qemu.Config{Kernel: k, MemoryMiB: 16, KVM: "off"})
	if err == nil || !strings.Contains(err.Error(), "likely cause: 16 MiB of guest memory is too small for the kernel and initramfs") {
		t.Errorf("16 MiB: %v", err)
	}
	// -v shows QEMU's command line.
	code, _, errs = runCLI(t, "boot", "-v", "-kvm", "off", "--", "true")
	if code != 0 || !strings.Contains(errs, bin+" -M ") || !strings.Contains(errs, "-kernel ") {
		t.Errorf("boot -v: exit %d, no QEMU command line:\n%s", code, errs)
	}
}
