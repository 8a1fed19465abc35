//go:build !unix

package qemu

// hostKernelRelease is the host's kernel release, unknown off Unix.
func hostKernelRelease() string { return "unknown" }
