//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package oci

import (
	"fmt"
	"os"
)

// flock fails where flock(2) is missing: the cache works unlocked.
func flock(f *os.File) error {
	return fmt.Errorf("%w: no flock on this system (%s)", errNoLocks, f.Name())
}
