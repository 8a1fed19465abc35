package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/supermachine-go/supermachine-kernel/internal/bootfiles"
	"github.com/supermachine-go/supermachine-kernel/internal/qemu"
	"github.com/supermachine-go/supermachine-kernel/kernel"
)

// oddName holds what QEMU's option syntax and shells trip on: a comma, a
// space, '=' and non-ASCII letters.
const oddName = "a,b =ü"

// A real boot where every path the user can choose holds oddName: the
// root image (-root), the temporary directory of the sockets (TMPDIR) and
// the asset cache of the kernel and initramfs
// (SUPERMACHINE_KERNEL_CACHE).
func TestBootOddPaths(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a guest")
	}
	bin, pkg, _ := qemu.Binary(kernel.Arch)
	if _, err := exec.LookPath(bin); err != nil {
		t.Fatalf("%s not installed: apt-get install %s", bin, pkg)
	}
	root, err := cachedBusyboxRoot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(root)
	if err != nil {
		t.Fatal(err)
	}
	// Short: the sockets made in TMPDIR must fit a socket path.
	top, err := os.MkdirTemp("", "odd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(top) })
	base := filepath.Join(top, oddName)
	for _, d := range []string{"root", "tmp", "cache"} {
		if err := os.MkdirAll(filepath.Join(base, d+","+oddName), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	odd := filepath.Join(base, "root,"+oddName, "root,x=y.sqfs")
	if err := os.WriteFile(odd, b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TMPDIR", filepath.Join(base, "tmp,"+oddName))
	t.Setenv(kernel.CacheEnv, filepath.Join(base, "cache,"+oddName))
	code, out, errs := runCLI(t, "boot", "-kvm", "off", "-root", odd, "--", "echo", "booted")
	if code != 0 || out != "booted\n" {
		t.Fatalf("boot -root %q: exit %d, stdout %q\n%s", odd, code, out, errs)
	}
	if ents, _ := os.ReadDir(os.Getenv("TMPDIR")); len(ents) != 0 {
		t.Errorf("boot left %d entries in TMPDIR", len(ents))
	}
	if !strings.Contains(errs, "agent ready") {
		t.Errorf("no agent ready line:\n%s", errs)
	}
}

// cachedBusyboxRoot returns the path of the squashfs root holding the
// host arch's bundled busybox, as boot uses it.
func cachedBusyboxRoot(ctx context.Context) (string, error) {
	a, err := bootfiles.For(kernel.Arch)
	if err != nil {
		return "", err
	}
	return bootfiles.BusyboxRoot(ctx, a)
}
