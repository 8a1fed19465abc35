package extract

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestWriteFileErrors checks that each failure names the destination,
// matches its cause with errors.Is, and leaves nothing behind.
func TestWriteFileErrors(t *testing.T) {
	ctx := context.Background()
	t.Run("missing parent", func(t *testing.T) {
		dir := t.TempDir()
		dest := filepath.Join(dir, "missing", "busybox")
		err := WriteFile(ctx, dest, busybox(), testMode, false)
		checkErr(t, err, dest, fs.ErrNotExist, "parent directory")
		assertEmptyDir(t, dir)
	})
	t.Run("parent is a file", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "file"), nil, 0o644)
		dest := filepath.Join(dir, "file", "busybox")
		err := WriteFile(ctx, dest, busybox(), testMode, false)
		checkErr(t, err, dest, syscall.ENOTDIR, "")
		if err := WriteFile(ctx, dest, busybox(), testMode, true); err == nil {
			t.Fatal("with parents: no error")
		}
	})
	t.Run("destination is a directory", func(t *testing.T) {
		dir := t.TempDir()
		dest := filepath.Join(dir, "busybox")
		os.Mkdir(dest, 0o755)
		err := WriteFile(ctx, dest, busybox(), testMode, false)
		checkErr(t, err, dest, syscall.EISDIR, "is a directory")
		if fi, err := os.Lstat(dest); err != nil || !fi.IsDir() {
			t.Fatal("the directory was touched")
		}
		assertNoTemps(t, dir)
	})
	t.Run("dangling symlink", func(t *testing.T) {
		dir := t.TempDir()
		dest := filepath.Join(dir, "busybox")
		target := filepath.Join(dir, "nowhere")
		os.Symlink(target, dest)
		err := WriteFile(ctx, dest, busybox(), testMode, false)
		checkErr(t, err, dest, ErrSymlink, "dangling")
		assertAbsent(t, target)
		if fi, err := os.Lstat(dest); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			t.Fatal("the symlink was replaced")
		}
		assertNoTemps(t, dir)
	})
	t.Run("symlink to a file", func(t *testing.T) {
		dir := t.TempDir()
		dest := filepath.Join(dir, "busybox")
		target := filepath.Join(dir, "target")
		os.WriteFile(target, []byte("keep"), 0o644)
		os.Symlink(target, dest)
		err := WriteFile(ctx, dest, busybox(), testMode, false)
		checkErr(t, err, dest, ErrSymlink, "symbolic link")
		if b, _ := os.ReadFile(target); string(b) != "keep" {
			t.Fatal("wrote through the symlink")
		}
	})
	t.Run("read-only directory", func(t *testing.T) {
		dir := readOnlyDir(t)
		dest := filepath.Join(dir, "busybox")
		err := WriteFile(ctx, dest, busybox(), testMode, false)
		if !errors.Is(err, syscall.EROFS) && !errors.Is(err, fs.ErrPermission) {
			t.Fatalf("err = %v, want EROFS or EACCES", err)
		}
		checkErr(t, err, dest, nil, "cannot create a file in "+dir)
		assertEmptyDir(t, dir)
		_, err = Cache{Dir: dir}.Path(ctx, busybox(), "busybox", testMode)
		if !errors.Is(err, syscall.EROFS) && !errors.Is(err, fs.ErrPermission) {
			t.Fatalf("cache: err = %v, want EROFS or EACCES", err)
		}
	})
	t.Run("no space left", func(t *testing.T) {
		// busybox is about 1.9 MB: it cannot fit in 1 MiB.
		dir := mountTmpfs(t, "size=1m")
		dest := filepath.Join(dir, "busybox")
		err := WriteFile(ctx, dest, busybox(), testMode, false)
		checkErr(t, err, dest, syscall.ENOSPC, "no space left")
		assertEmptyDir(t, dir)
		_, err = Cache{Dir: dir}.Path(ctx, busybox(), "busybox", testMode)
		checkErr(t, err, filepath.Join(dir, busybox().SHA256, "busybox"), syscall.ENOSPC, "")
		assertNoFiles(t, dir)
	})
}

// checkErr checks that err is an *fs.PathError for path whose message
// contains substr and which matches target (if not nil).
func checkErr(t *testing.T, err error, path string, target error, substr string) {
	t.Helper()
	if err == nil {
		t.Fatal("no error")
	}
	t.Logf("error: %v", err)
	var pe *fs.PathError
	if !errors.As(err, &pe) || pe.Path != path {
		t.Errorf("not an *fs.PathError for %s: %#v", path, err)
	}
	if target != nil && !errors.Is(err, target) {
		t.Errorf("error does not match %v: %v", target, err)
	}
	if !strings.Contains(err.Error(), substr) || !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not say %q and name %s", err, substr, path)
	}
}
