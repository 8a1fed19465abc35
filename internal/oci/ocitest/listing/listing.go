// Package listing describes the files of a tree in one line each, the
// same way for a tar stream on the host and for a booted guest's root,
// so the two can be compared line by line.
package listing

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
)

// Entry is one path's metadata.
type Entry struct {
	Type         byte // tar type flag: '0' file, '1' hard link, '2' symlink, '3' char, '4' block, '5' dir, '6' fifo
	Mode         int64
	UID, GID     int
	Content      []byte // regular files
	Link         string // symbolic link target, or the first path of a hard-linked inode
	Major, Minor int64
	Xattrs       map[string]string
	MTime        int64
}

// Line is the entry's description: type, mode, owner, then the size and
// a content hash, the link target or the device numbers, the extended
// attributes (hex values), and the modification time unless it is 0.
func (e Entry) Line() string {
	s := fmt.Sprintf("%c %o %d:%d", e.Type, e.Mode, e.UID, e.GID)
	switch e.Type {
	case '0':
		sum := sha256.Sum256(e.Content)
		s += fmt.Sprintf(" %d %s", len(e.Content), hex.EncodeToString(sum[:4]))
	case '1', '2':
		s += " -> " + e.Link
	case '3', '4':
		s += fmt.Sprintf(" %d,%d", e.Major, e.Minor)
	}
	var xs []string
	for k, v := range e.Xattrs {
		xs = append(xs, k+"="+hex.EncodeToString([]byte(v)))
	}
	slices.Sort(xs)
	if len(xs) > 0 {
		s += " " + strings.Join(xs, ",")
	}
	if e.MTime != 0 {
		s += fmt.Sprintf(" t=%d", e.MTime)
	}
	return s
}

// MountPoint is the line for a directory the guest mounted something on.
const MountPoint = "mount point"
