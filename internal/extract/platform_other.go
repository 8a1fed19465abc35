//go:build !unix

package extract

import "os"

// openNoFollow opens path for reading. Symbolic links are rejected by the
// callers' Lstat on these systems.
func openNoFollow(path string) (*os.File, error) { return os.Open(path) }
