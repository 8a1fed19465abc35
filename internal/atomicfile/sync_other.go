//go:build !unix

package atomicfile

// syncDir is a no-op where directories cannot be synced (Windows: a
// completed MoveFileEx is durable once the file's data is).
func syncDir(string) error { return nil }
