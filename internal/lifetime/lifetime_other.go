//go:build !unix

package lifetime

import (
	"os"
	"syscall"
)

var sigZero = syscall.Signal(0)

// Without flock(2) a directory's owner cannot be checked: none is stale.
func lockOwner(*os.File) error { return nil }
func ownerGone(*os.File) bool  { return false }
