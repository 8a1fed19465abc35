//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package atomicfile

import (
	"os"
	"syscall"
)

// lock takes an exclusive flock on a temporary file while it is being
// written. The kernel drops the lock when the process dies, however it
// dies, so a temporary file nobody holds is known to be abandoned.
func lock(f *os.File) {
	// Best effort: without the lock, cleanStale's age rule still holds.
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
}

// abandoned reports whether no live process holds the temporary file at
// path.
func abandoned(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil
}
