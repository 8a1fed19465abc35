//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package atomicfile

import "os"

// lock does nothing where flock is missing; cleanStale then relies on the
// age of a temporary file alone.
func lock(*os.File) {}

// abandoned reports true: without locks, age is the only evidence.
func abandoned(string) bool { return true }
