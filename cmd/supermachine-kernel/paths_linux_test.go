package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/supermachine-go/supermachine-kernel/kernel"
)

// A real vmexec run where the paths the user can choose hold a comma,
// '=' and non-ASCII letters: the kernel (-kernel, also with a space), the
// working directory shared with the guest, and TMPDIR, where the views of
// the host's files that virtiofsd serves and the sockets live.
func TestVMExecOddPaths(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a guest")
	}
	if os.Geteuid() != 0 {
		t.Skip("vmexec shares files over virtio-fs, which needs root")
	}
	k, err := kernel.Kernel.Cached(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(k)
	if err != nil {
		t.Fatal(err)
	}
	// Short: the sockets made in TMPDIR must fit a socket path.
	base, err := os.MkdirTemp("", "odd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	kdir, wd, tmp := filepath.Join(base, "k,e y=ü"), filepath.Join(base, "w,d=ü"), filepath.Join(base, "t,m=ü")
	for _, d := range []string{kdir, wd, tmp} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	kernelPath := filepath.Join(kdir, "bz,Image")
	if err := os.WriteFile(kernelPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatal(err)
	}
	// vmexec runs itself as the helper of virtiofsd's read-only view:
	// run the CLI, not this test binary.
	cli := goBuild(t, t.TempDir(), ".", "supermachine-kernel")
	cmd := exec.Command(cli, "vmexec", "-kvm", "off", "-kernel", kernelPath, "--", sh, "-c", `pwd; echo written > "$PWD/out"`)
	cmd.Dir = wd
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || string(out) != wd+"\n" {
		t.Fatalf("vmexec: %v, stdout %q, want %q\n%s", err, out, wd+"\n", stderr.String())
	}
	if b, err := os.ReadFile(filepath.Join(wd, "out")); err != nil || string(b) != "written\n" {
		t.Errorf("the file written in the guest's working directory: %q, %v", b, err)
	}
	if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
		t.Errorf("vmexec left %d entries in TMPDIR", len(ents))
	}
}
