package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/supermachine-go/supermachine-kernel/internal/qemu"
	"github.com/supermachine-go/supermachine-kernel/kernel"
)

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	code = run(ctx, args, &o, &e)
	return code, o.String(), e.String()
}

func TestInfo(t *testing.T) {
	code, out, _ := runCLI(t, "info")
	if code != 0 || !strings.Contains(out, "arch: "+kernel.Arch) || !strings.Contains(out, kernel.Kernel.SHA256()) {
		t.Fatalf("info: code %d\n%s", code, out)
	}
	code, out, _ = runCLI(t, "info", "-json")
	var m kernel.Info
	if err := json.Unmarshal([]byte(out), &m); err != nil || code != 0 {
		t.Fatalf("info -json: code %d, %v\n%s", code, err, out)
	}
	if m.Agent.Version != kernel.Agent.Version() || m.Kernel.Size != kernel.KernelLen {
		t.Errorf("info -json: %+v", m)
	}
	// amd64 shows the derived vmlinux; arm64's Image needs none.
	if hasV := m.Vmlinux != nil; hasV != (kernel.Arch == "amd64") {
		t.Errorf("info -json on %s: vmlinux entry %+v", kernel.Arch, m.Vmlinux)
	}
	if m.Vmlinux != nil && m.Vmlinux.SHA256 != kernel.Vmlinux.SHA256() {
		t.Errorf("info -json: vmlinux SHA-256 %s, want %s", m.Vmlinux.SHA256, kernel.Vmlinux.SHA256())
	}
	// The schema is kernel.Info's (documented there), not manifest.json's:
	// the extracted file name, the mode as a number, flat xz fields.
	var raw map[string]map[string]any
	json.Unmarshal([]byte(out), &raw)
	k := raw["kernel"]
	if k["file"] != kernel.Kernel.File() || k["mode"] != float64(0o644) || k["xz_size"] == nil || k["xz"] != nil {
		t.Errorf("info -json: kernel is %v, want kernel.Info's schema", k)
	}
}

func TestExtractAndInitramfs(t *testing.T) {
	dir := t.TempDir()
	code, out, errs := runCLI(t, "extract", dir)
	if code != 0 {
		t.Fatalf("extract: %d %s", code, errs)
	}
	files := []string{kernel.Kernel.File(), "busybox", "supermachine-agent"}
	if kernel.Arch == "amd64" {
		files = append(files, "vmlinux")
		b, err := os.ReadFile(filepath.Join(dir, "vmlinux"))
		if err != nil || !bytes.HasPrefix(b, []byte("\x7fELF")) || int64(len(b)) != kernel.Vmlinux.Len() {
			t.Fatalf("extract: vmlinux is not the %d-byte ELF (%v)", kernel.Vmlinux.Len(), err)
		}
	}
	for _, f := range files {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil || !strings.Contains(out, filepath.Join(dir, f)) {
			t.Fatalf("extract did not write or print %s: %v\n%s", f, err, out)
		}
		if f != kernel.Kernel.File() && f != "vmlinux" && st.Mode().Perm() != 0o755 {
			t.Errorf("%s mode %v", f, st.Mode())
		}
	}
	ir := filepath.Join(dir, "initrd.cpio")
	code, _, errs = runCLI(t, "initramfs", "-o", ir, "-rootfstype", "ext4", "-mount", "/dev/vdb:/data:ext4")
	if code != 0 {
		t.Fatalf("initramfs: %d %s", code, errs)
	}
	b, err := os.ReadFile(ir)
	for _, want := range []string{`rootfstype "ext4"`, `mount "/dev/vdb" "/data" "ext4" ""`} {
		if err != nil || !bytes.Contains(b, []byte(want)) {
			t.Errorf("initramfs archive lacks %s in its settings file (%v)", want, err)
		}
	}
	if code, _, errs := runCLI(t, "initramfs", "-o", ir, "-mount", "/dev/vdb:data:ext4"); code == 0 || !strings.Contains(errs, "not an absolute path") {
		t.Errorf("initramfs with a relative mount target: code %d, %s", code, errs)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{}, {"frobnicate"}, {"initramfs"}, {"boot"}, {"exec", "--", "true"}, {"extract", "a", "b"}, {"info", "-bogus"}} {
		if code, _, _ := runCLI(t, args...); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
	if code, _, e := runCLI(t, "exec", "-connect", "tcp:1.2.3.4", "--", "true"); code != 1 || !strings.Contains(e, "bad -connect address") {
		t.Errorf("bad address: %d %q", code, e)
	}
	if code, _, e := runCLI(t, "boot", "-root", "/nonexistent", "--", "true"); code != 1 || !strings.Contains(e, "/nonexistent") {
		t.Errorf("missing root: %d %q", code, e)
	}
	if code, out, _ := runCLI(t, "-h"); code != 0 || out != "" {
		t.Errorf("-h: %d", code)
	}
}

// exec against the bundled agent running on this host (it is a static
// linux binary of the host arch) on a Unix socket.
func TestExecUnix(t *testing.T) {
	dir := t.TempDir()
	runCLIOK(t, "extract", dir)
	sock := filepath.Join(dir, "agent.sock")
	a := exec.Command(filepath.Join(dir, "supermachine-agent"), "-listen-unix", sock, "-vsock-port", "0", "-serial-port", "")
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	defer a.Process.Kill()
	for i := 0; i < 500; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	code, out, errs := runCLI(t, "exec", "-connect", "unix:"+sock, "--", "sh", "-c", "echo hello; exit 3")
	if code != 3 || out != "hello\n" {
		t.Errorf("exec: code %d, out %q, err %q", code, out, errs)
	}
}

// runCLIOK runs the CLI and fails the test unless it exits 0.
func runCLIOK(t *testing.T, args ...string) {
	t.Helper()
	if code, _, errs := runCLI(t, args...); code != 0 {
		t.Fatalf("%q: exit %d: %s", args, code, errs)
	}
}

// The README's main job: boot the bundled kernel and run a command.
func TestBoot(t *testing.T) {
	bin, pkg, _ := qemu.Binary(kernel.Arch)
	for tool, p := range map[string]string{bin: pkg, "mksquashfs": "squashfs-tools"} {
		if _, err := exec.LookPath(tool); err != nil {
			if testing.Short() {
				t.Skipf("%s not installed (%s)", tool, p)
			}
			t.Fatalf("%s not installed: apt-get install %s", tool, p)
		}
	}
	code, out, errs := runCLI(t, "boot", "--", "uname", "-r")
	if code != 0 || !strings.HasPrefix(out, "6.12.") || !strings.Contains(errs, "agent ready") {
		t.Fatalf("boot -- uname -r: code %d, out %q\n%s", code, out, errs)
	}
	code, _, errs = runCLI(t, "boot", "--", "sh", "-c", "exit 4")
	if code != 4 {
		t.Errorf("boot -- sh -c 'exit 4': code %d\n%s", code, errs)
	}
}
