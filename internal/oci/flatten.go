package oci

import (
	"archive/tar"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"strings"
)

// ErrEscape is matched by the error for a layer entry (a name or a hard
// link target) that would lie outside the root.
var ErrEscape = errors.New("path escapes the root")

// ErrLayer is matched by every error about the content of a layer: an
// unreadable or malformed tar stream, an entry type the root cannot hold,
// a hard link to nothing, a digest that does not match.
var ErrLayer = errors.New("bad layer")

// whiteoutPrefix marks an OCI whiteout entry; whiteoutOpaque, a directory
// whose lower content is hidden.
const (
	whiteoutPrefix     = ".wh."
	whiteoutOpaque     = ".wh..wh..opq"
	whiteoutMetaPrefix = ".wh..wh." // AUFS bookkeeping (.wh..wh.plnk, …): never content
	maxSymlinkHops     = 40         // Linux's MAXSYMLINKS
)

// A Tree is the file tree of an image being flattened: layers are applied
// to it in order with Apply, then WriteTar writes the result. Regular
// file contents are kept in a spool file, so memory holds metadata only.
//
// Its semantics are those of the OCI image layer specification: an entry
// replaces what lies at its path (a directory over a directory only
// updates the metadata); ".wh.NAME" hides NAME of the lower layers and
// ".wh..wh..opq" hides a directory's lower content, while entries of the
// same layer stay; a hard link shares the inode its target has when the
// link is applied. Intermediate symbolic links are followed inside the
// root (an absolute target starts at the root, ".." stops there), so no
// entry lands outside it; an entry name or hard link target that leaves
// the root is an error matching ErrEscape.
type Tree struct {
	root  *node
	spool *os.File
	end   int64 // spool size
	layer int   // the layer being applied, from 1
}

// node is a path in the tree.
type node struct {
	ino      *inode
	children map[string]*node // directories only
	layer    int              // the layer that created or last declared it
}

// inode is what paths point at: hard links share one.
type inode struct {
	typ        byte // tar.TypeDir, TypeReg, TypeSymlink, TypeChar, TypeBlock, TypeFifo
	mode       int64
	uid, gid   int
	mtime      int64 // seconds since the epoch
	linkname   string
	devmajor   int64
	devminor   int64
	xattrs     map[string]string
	size, off  int64 // regular files: the content in the spool
	implicitly bool  // a directory made because an entry needed it
}

// NewTree returns an empty tree (a root directory 0755 owned by root)
// whose file contents go to spool, an empty file the caller owns.
func NewTree(spool *os.File) *Tree {
	return &Tree{root: newDir(0), spool: spool}
}

func newDir(layer int) *node {
	return &node{ino: &inode{typ: tar.TypeDir, mode: 0o755, implicitly: true}, children: map[string]*node{}, layer: layer}
}

// Apply applies the next layer, a tar stream, to the tree.
func (t *Tree) Apply(r io.Reader) error {
	t.layer++
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: reading the tar stream: %w", ErrLayer, err)
		}
		if err := t.applyEntry(h, tr); err != nil {
			return fmt.Errorf("entry %q: %w", h.Name, err)
		}
	}
}

// cleanName turns an entry name or hard link target into a clean path
// relative to the root ("" for the root itself).
func cleanName(name string) (string, error) {
	p := path.Clean("/" + name)
	// path.Clean("/"+x) never leaves the root: a ".." there is lost. Look
	// at the name itself to refuse it instead.
	rel := path.Clean(strings.TrimLeft(name, "/"))
	if rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("%w: %q", ErrEscape, name)
	}
	return strings.TrimPrefix(p, "/"), nil
}

func (t *Tree) applyEntry(h *tar.Header, r io.Reader) error {
	switch h.Typeflag {
	case tar.TypeXGlobalHeader:
		return nil
	case tar.TypeReg, tar.TypeLink, tar.TypeSymlink, tar.TypeChar, tar.TypeBlock, tar.TypeFifo, tar.TypeDir:
	default:
		return fmt.Errorf("%w: tar entry type %q cannot be part of a root file system", ErrLayer, h.Typeflag)
	}
	p, err := cleanName(h.Name)
	if err != nil {
		return err
	}
	dir, base := path.Split(p)
	if strings.HasPrefix(base, whiteoutPrefix) {
		return t.whiteout(strings.TrimSuffix(dir, "/"), base)
	}
	if p == "" {
		if h.Typeflag != tar.TypeDir {
			return fmt.Errorf("%w: the root must be a directory", ErrLayer)
		}
		t.root.ino = t.metadata(h)
		t.root.layer = t.layer
		return nil
	}
	parent, err := t.walk(dir, true)
	if err != nil {
		return err
	}
	old := parent.children[base]
	var n *node
	switch h.Typeflag {
	case tar.TypeDir:
		if old != nil && old.ino.typ == tar.TypeDir {
			old.ino = t.metadata(h)
			old.layer = t.layer
			return nil
		}
		n = &node{ino: t.metadata(h), children: map[string]*node{}}
	case tar.TypeLink:
		target, err := cleanName(h.Linkname)
		if err != nil {
			return fmt.Errorf("hard link target: %w", err)
		}
		if target == p {
			return nil
		}
		tdir, tbase := path.Split(target)
		tparent, err := t.walk(tdir, false)
		var tn *node
		if err == nil {
			tn = tparent.children[tbase]
		}
		if tn == nil {
			return fmt.Errorf("%w: hard link to %q, which does not exist", ErrLayer, h.Linkname)
		}
		if tn.ino.typ == tar.TypeDir {
			return fmt.Errorf("%w: hard link to the directory %q", ErrLayer, h.Linkname)
		}
		n = &node{ino: tn.ino}
	default:
		ino := t.metadata(h)
		if ino.typ == tar.TypeReg {
			if ino.off, ino.size, err = t.store(r, h.Size); err != nil {
				return err
			}
		}
		n = &node{ino: ino}
	}
	n.layer = t.layer
	parent.children[base] = n
	return nil
}

// metadata is the inode an entry describes.
func (t *Tree) metadata(h *tar.Header) *inode {
	typ := h.Typeflag // archive/tar reads the old '\x00' type as TypeReg
	ino := &inode{typ: typ, mode: h.Mode & 0o7777, uid: h.Uid, gid: h.Gid, mtime: h.ModTime.Unix()}
	switch typ {
	case tar.TypeSymlink:
		ino.linkname = h.Linkname
	case tar.TypeChar, tar.TypeBlock:
		ino.devmajor, ino.devminor = h.Devmajor, h.Devminor
	}
	for k, v := range h.PAXRecords {
		if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
			ino.setXattr(name, v)
		} else if enc, ok := strings.CutPrefix(k, "LIBARCHIVE.xattr."); ok {
			// libarchive: URL-encoded name, base64 value.
			name, err1 := url.QueryUnescape(enc)
			val, err2 := base64.StdEncoding.DecodeString(v)
			if err2 != nil {
				val, err2 = base64.RawStdEncoding.DecodeString(v)
			}
			if err1 == nil && err2 == nil {
				ino.setXattr(name, string(val))
			}
		}
	}
	return ino
}

func (ino *inode) setXattr(name, value string) {
	if ino.xattrs == nil {
		ino.xattrs = map[string]string{}
	}
	ino.xattrs[name] = value
}

// store appends size bytes of r to the spool.
func (t *Tree) store(r io.Reader, size int64) (off, n int64, err error) {
	off = t.end
	n, err = io.Copy(io.NewOffsetWriter(t.spool, off), io.LimitReader(r, size))
	t.end += n
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) && pe.Path == t.spool.Name() {
			return 0, 0, fmt.Errorf("writing the file contents to %s: %w", t.spool.Name(), pe.Err)
		}
		return 0, 0, fmt.Errorf("%w: reading the file content: %w", ErrLayer, err)
	}
	if n != size {
		return 0, 0, fmt.Errorf("%w: the file content ends after %d of %d bytes", ErrLayer, n, size)
	}
	return off, n, nil
}

// whiteout applies a whiteout entry base found in the directory dir.
func (t *Tree) whiteout(dir, base string) error {
	parent, err := t.walk(dir, base == whiteoutOpaque)
	if errors.Is(err, errNotExist) {
		return nil // nothing to hide
	}
	if err != nil {
		return err
	}
	if base == whiteoutOpaque {
		t.hideLower(parent)
		return nil
	}
	if strings.HasPrefix(base, whiteoutMetaPrefix) {
		return nil
	}
	name := strings.TrimPrefix(base, whiteoutPrefix)
	if name == "" || name == "." || name == ".." {
		return fmt.Errorf("%w: whiteout %q names no file", ErrLayer, base)
	}
	n := parent.children[name]
	if n == nil || n.layer == t.layer && n.ino.typ != tar.TypeDir {
		return nil // absent, or of this very layer: whiteouts hide lower layers only
	}
	if n.ino.typ == tar.TypeDir {
		t.hideLower(n)
		if n.layer == t.layer || len(n.children) > 0 {
			return nil // it holds entries of this layer
		}
	}
	delete(parent.children, name)
	return nil
}

// hideLower removes from the directory n everything the layers below the
// current one put there, keeping the current layer's entries (and the
// directories that lead to them).
func (t *Tree) hideLower(n *node) {
	for name, c := range n.children {
		if c.ino.typ == tar.TypeDir {
			t.hideLower(c)
			if c.layer < t.layer && len(c.children) == 0 {
				delete(n.children, name)
			}
		} else if c.layer < t.layer {
			delete(n.children, name)
		}
	}
}

var errNotExist = errors.New("no such directory")

// walk returns the directory at p (relative to the root), following
// symbolic links inside the root. With create, missing directories are
// made (0755, owned by root, mtime 0) as the current layer's.
func (t *Tree) walk(p string, create bool) (*node, error) {
	comps := strings.Split(p, "/")
	cur := t.root
	var parents []*node
	hops := 0
	for len(comps) > 0 {
		c := comps[0]
		comps = comps[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(parents) > 0 {
				cur, parents = parents[len(parents)-1], parents[:len(parents)-1]
			}
			continue
		}
		child := cur.children[c]
		if child == nil {
			if !create {
				return nil, errNotExist
			}
			child = newDir(t.layer)
			cur.children[c] = child
		}
		switch child.ino.typ {
		case tar.TypeDir:
			parents = append(parents, cur)
			cur = child
		case tar.TypeSymlink:
			if hops++; hops > maxSymlinkHops {
				return nil, fmt.Errorf("%w: too many levels of symbolic links in %q", ErrLayer, p)
			}
			target := child.ino.linkname
			if strings.HasPrefix(target, "/") {
				cur, parents = t.root, nil
			}
			comps = append(strings.Split(target, "/"), comps...)
		default:
			return nil, fmt.Errorf("%w: %q: a path component is not a directory", ErrLayer, p)
		}
	}
	return cur, nil
}
