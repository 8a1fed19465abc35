package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/supermachine-go/supermachine-kernel/internal/bootfiles"
	"github.com/supermachine-go/supermachine-kernel/kernel"
)

// cachedBusyboxRoot returns the path of the squashfs root holding the
// host arch's bundled busybox, as boot uses it.
func cachedBusyboxRoot(ctx context.Context) (string, error) {
	a, err := bootfiles.For(kernel.Arch)
	if err != nil {
		return "", err
	}
	return bootfiles.BusyboxRoot(ctx, a)
}

// The busybox root lands in the boot cache complete, 0644, with nothing
// else left there, and a second call finds it.
func TestCachedBusyboxRoot(t *testing.T) {
	if _, err := exec.LookPath("mksquashfs"); err != nil {
		t.Skip("mksquashfs not installed (apt-get install squashfs-tools)")
	}
	cache := t.TempDir()
	t.Setenv(kernel.CacheEnv, cache)
	ctx := context.Background()
	path, err := cachedBusyboxRoot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(path)
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o644 {
		t.Fatalf("%s: %v %v, want a regular file 0644", path, fi, err)
	}
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 4 || string(b[:4]) != "hsqs" {
		t.Fatalf("%s is not a squashfs image (%d bytes, %v)", path, len(b), err)
	}
	ents, _ := os.ReadDir(filepath.Join(cache, "boot"))
	if len(ents) != 1 || ents[0].Name() != filepath.Base(path) {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("boot cache holds %q, want only %s", names, filepath.Base(path))
	}
	again, err := cachedBusyboxRoot(ctx)
	if err != nil || again != path {
		t.Fatalf("second call: %s, %v; want %s", again, err, path)
	}
	if fi2, _ := os.Lstat(path); !os.SameFile(fi, fi2) {
		t.Error("second call rewrote the image")
	}
}
