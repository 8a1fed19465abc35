//go:build unix

package qemu

import (
	"os/user"
	"strconv"

	"golang.org/x/sys/unix"
)

// hostKernelRelease is the host's kernel release (uname -r).
func hostKernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// fileGroup is the name (or the number) of the group that owns path, or
// "" if it cannot be told.
func fileGroup(path string) string {
	var st unix.Stat_t
	if unix.Stat(path, &st) != nil {
		return ""
	}
	gid := strconv.FormatUint(uint64(st.Gid), 10)
	if g, err := user.LookupGroupId(gid); err == nil {
		return g.Name
	}
	return gid
}
