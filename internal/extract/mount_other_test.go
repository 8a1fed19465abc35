//go:build !linux

package extract

import (
	"os"
	"testing"
)

// mountTmpfs skips: mounting a tmpfs is a Linux test.
func mountTmpfs(t *testing.T, opts string) string {
	t.Helper()
	t.Skip("skipping: mounting a tmpfs is Linux-only")
	return ""
}

// readOnlyDir returns a 0555 directory, or skips as root (root ignores
// permission bits, and only Linux tests mount a read-only tmpfs).
func readOnlyDir(t *testing.T) string {
	t.Helper()
	if os.Geteuid() == 0 {
		t.Skip("skipping: root ignores permission bits here")
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o555)
	t.Cleanup(func() { os.Chmod(dir, 0o755) })
	return dir
}
