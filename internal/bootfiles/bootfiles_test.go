package bootfiles

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/supermachine-go/supermachine-kernel/kernel"
)

// hostAssets registers the host arch's busybox, the one asset
// BusyboxRoot reads, and returns what For gives back.
func hostAssets(t *testing.T) Assets {
	t.Helper()
	Register(Assets{
		Arch:    kernel.Arch,
		Busybox: Blob{SHA256: kernel.Busybox.SHA256(), Bytes: kernel.Busybox.Bytes},
	})
	a, err := For(kernel.Arch)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// The busybox root lands in the boot cache complete, 0644, with nothing
// else left there, and a second call finds it.
func TestBusyboxRoot(t *testing.T) {
	if _, err := exec.LookPath("mksquashfs"); err != nil {
		t.Skip("mksquashfs not installed (apt-get install squashfs-tools)")
	}
	cache := t.TempDir()
	t.Setenv(kernel.CacheEnv, cache)
	ctx := context.Background()
	a := hostAssets(t)
	path, err := BusyboxRoot(ctx, a)
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
	again, err := BusyboxRoot(ctx, a)
	if err != nil || again != path {
		t.Fatalf("second call: %s, %v; want %s", again, err, path)
	}
	if fi2, _ := os.Lstat(path); !os.SameFile(fi, fi2) {
		t.Error("second call rewrote the image")
	}
}

// An arch nobody registered is an ErrNotRegistered naming the arch and
// the arches the program links.
func TestForUnregistered(t *testing.T) {
	hostAssets(t)
	_, err := For("riscv64")
	if !errors.Is(err, ErrNotRegistered) {
		t.Fatalf("For(riscv64) = %v, want ErrNotRegistered", err)
	}
	for _, want := range []string{`"riscv64"`, kernel.Arch} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}
