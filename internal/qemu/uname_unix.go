//go:build unix

package qemu

import "golang.org/x/sys/unix"

// hostKernelRelease is the host's kernel release (uname -r).
func hostKernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}
