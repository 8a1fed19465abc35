//go:build !unix

package extract

import "os"

// openNoFollow opens path for reading. Symbolic links are rejected by the
// callers' Lstat on these systems.
func openNoFollow(path string) (*os.File, error) { return os.Open(path) }

// syncDir is a no-op where directories cannot be synced (Windows: a
// completed MoveFileEx is durable once the file's data is).
func syncDir(string) error { return nil }
