//go:build !unix

package qemu

// hostKernelRelease is the host's kernel release, unknown off Unix.
func hostKernelRelease() string { return "unknown" }

// fileGroup cannot tell a file's group off Unix.
func fileGroup(string) string { return "" }
