package oci

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"time"
)

// ErrUnsupported is matched by the error for an image whose tree a
// squashfs root cannot hold exactly.
var ErrUnsupported = errors.New("cannot be stored exactly in the root image")

// xattrNamespaces are the extended attribute namespaces squashfs stores.
var xattrNamespaces = []string{"user.", "trusted.", "security."}

// keepXattr says whether the root image keeps an extended attribute:
// squashfs holds only the user, trusted and security namespaces, and
// trusted.overlay.* would be read by the guest's overlay root as its own
// bookkeeping (opaque directories, redirects), so it is left out.
func keepXattr(name string) bool {
	if strings.HasPrefix(name, "trusted.overlay.") {
		return false
	}
	for _, ns := range xattrNamespaces {
		if strings.HasPrefix(name, ns) {
			return true
		}
	}
	return false
}

// RootMeta is the root directory's owner and mode, which a tar stream of
// the tree does not carry (squashfs tools take them as options).
type RootMeta struct {
	Mode     int64
	UID, GID int
}

// Root returns the owner and mode of the root directory.
func (t *Tree) Root() RootMeta {
	ino := t.root.ino
	return RootMeta{Mode: ino.mode, UID: ino.uid, GID: ino.gid}
}

// NewestTime is the latest modification time in the tree, within
// squashfs's range.
func (t *Tree) NewestTime() int64 {
	var newest int64
	var walk func(n *node)
	walk = func(n *node) {
		newest = max(newest, clampTime(n.ino.mtime))
		for _, c := range n.children {
			walk(c)
		}
	}
	walk(t.root)
	return newest
}

// clampTime brings a modification time into what squashfs stores: an
// unsigned 32-bit count of seconds.
func clampTime(s int64) int64 { return min(max(s, 0), math.MaxUint32) }

// WriteTar writes the flattened tree to w as one tar stream, in a fixed
// order (depth first, names sorted by byte), so the same layers always
// give the same bytes: directories before their content, and the second
// and later paths of an inode as hard links to its first. The root
// directory itself is not in the stream (see Root). Modification times
// are whole seconds within squashfs's range (see clampTime).
func (t *Tree) WriteTar(w io.Writer) error {
	tw := tar.NewWriter(w)
	first := map[*inode]string{}
	if err := t.writeDir(tw, t.root, "", first); err != nil {
		return err
	}
	return tw.Close()
}

func (t *Tree) writeDir(tw *tar.Writer, dir *node, prefix string, first map[*inode]string) error {
	for _, name := range slices.Sorted(maps.Keys(dir.children)) {
		n := dir.children[name]
		p := prefix + name
		ino := n.ino
		h := &tar.Header{
			Name: p, Typeflag: ino.typ, Mode: ino.mode, Uid: ino.uid, Gid: ino.gid,
			ModTime: time.Unix(clampTime(ino.mtime), 0), Format: tar.FormatPAX,
		}
		if f, ok := first[ino]; ok {
			h.Typeflag, h.Linkname = tar.TypeLink, f
		} else {
			first[ino] = p
			switch ino.typ {
			case tar.TypeDir:
				h.Name += "/"
			case tar.TypeReg:
				h.Size = ino.size
			case tar.TypeSymlink:
				h.Linkname = ino.linkname
			case tar.TypeChar, tar.TypeBlock:
				h.Devmajor, h.Devminor = ino.devmajor, ino.devminor
			}
			for k, v := range ino.xattrs {
				if keepXattr(k) {
					if h.PAXRecords == nil {
						h.PAXRecords = map[string]string{}
					}
					h.PAXRecords["SCHILY.xattr."+k] = v
				}
			}
			// squashfs-tools 4.5 drops the leading slashes of a PAX
			// linkpath record, which Go writes for a symbolic link
			// target longer than the 100 bytes of the ustar field:
			// such links go in the GNU format (a long-link entry),
			// which cannot carry extended attributes.
			if ino.typ == tar.TypeSymlink && strings.HasPrefix(ino.linkname, "/") && !fitsUstar(ino.linkname) {
				if h.PAXRecords != nil {
					return fmt.Errorf("%w: /%s: a symbolic link with extended attributes and an absolute target of %d bytes", ErrUnsupported, p, len(ino.linkname))
				}
				h.Format = tar.FormatGNU
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("/%s: %w", p, err)
		}
		if h.Typeflag == tar.TypeReg && h.Size > 0 {
			if _, err := io.Copy(tw, io.NewSectionReader(t.spool, ino.off, ino.size)); err != nil {
				return fmt.Errorf("/%s: %w", p, err)
			}
		}
		if ino.typ == tar.TypeDir {
			if err := t.writeDir(tw, n, p+"/", first); err != nil {
				return err
			}
		}
	}
	return nil
}

// fitsUstar says whether s fits a ustar header field of 100 bytes as is.
func fitsUstar(s string) bool {
	if len(s) > 100 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] == 0 || s[i] >= 0x80 {
			return false
		}
	}
	return true
}
