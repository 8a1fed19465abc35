package extract

import (
	"fmt"
	"io/fs"
	"syscall"
)

// fileID identifies a file's inode and its last change. Any write, chmod,
// rename over or replacement changes it: ctime cannot be set by users.
func fileID(fi fs.FileInfo) string {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return genericFileID(fi)
	}
	return fmt.Sprintf("dev=%d ino=%d size=%d mode=%o mtime=%d.%09d ctime=%d.%09d",
		uint64(st.Dev), uint64(st.Ino), st.Size, st.Mode,
		st.Mtimespec.Sec, st.Mtimespec.Nsec, st.Ctimespec.Sec, st.Ctimespec.Nsec)
}
