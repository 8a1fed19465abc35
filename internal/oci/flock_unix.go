//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package oci

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// flock takes an exclusive flock(2) on f without waiting: errBusy if
// another open file holds it.
func flock(f *os.File) error {
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		switch err {
		case nil:
			return nil
		case unix.EINTR:
			continue
		case unix.EWOULDBLOCK:
			return errBusy
		}
		return fmt.Errorf("%w: flock %s: %w", errNoLocks, f.Name(), err)
	}
}
