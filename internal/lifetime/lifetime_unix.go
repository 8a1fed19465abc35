//go:build unix

package lifetime

import (
	"os"
	"syscall"
)

var sigZero = syscall.Signal(0)

// lockOwner takes the exclusive flock that marks f's directory as owned by
// a live process; the kernel drops it when the process dies.
func lockOwner(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
}

// ownerGone reports whether nobody holds the owner lock on f.
func ownerGone(f *os.File) bool {
	if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		return false
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return true
}
