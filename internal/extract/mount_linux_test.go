package extract

import (
	"os"
	"syscall"
	"testing"
)

// mountTmpfs mounts a fresh tmpfs with opts in a temporary directory, or
// skips the test if this process cannot mount.
func mountTmpfs(t *testing.T, opts string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, opts); err != nil {
		t.Skipf("skipping: cannot mount a tmpfs here (%v); a container without CAP_SYS_ADMIN or an emulator without mount support", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// readOnlyDir returns a directory this process cannot create files in: a
// read-only tmpfs as root (root ignores permission bits), else a 0555
// directory.
func readOnlyDir(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		dir := t.TempDir()
		os.Chmod(dir, 0o555)
		t.Cleanup(func() { os.Chmod(dir, 0o755) })
		return dir
	}
	dir := mountTmpfs(t, "size=4m")
	if err := syscall.Mount("", dir, "", syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
		t.Skipf("skipping: cannot remount %s read-only: %v", dir, err)
	}
	return dir
}
