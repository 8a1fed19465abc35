//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package extract

import "os"

// lockTemp does nothing where flock is missing; CleanStale then relies on
// the age of a temporary file alone.
func lockTemp(*os.File) {}

// abandoned reports true: without locks, age is the only evidence.
func abandoned(string) bool { return true }
