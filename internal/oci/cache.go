package oci

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Cached is an image in the cache, as List reports it.
type Cached struct {
	Digest string // the cache key (see Image.Digest)
	Arch   string
	Ref    string // the reference it was converted from
	Root   string // the root image's path
	Size   int64  // the root image's size in bytes
}

// List returns the images in the cache directory dir of every converter
// version, sorted by reference.
//
// It first removes what writers that died left in the cache (see
// Prepare).
func List(dir string) ([]Cached, error) {
	sweep(dir)
	var out []Cached
	versions, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	for _, v := range versions {
		if !v.IsDir() || v.Name() == "refs" || strings.HasPrefix(v.Name(), ".") {
			continue
		}
		entries, err := os.ReadDir(filepath.Join(dir, v.Name()))
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			ed := filepath.Join(dir, v.Name(), e.Name())
			b, err := os.ReadFile(filepath.Join(ed, "image.json"))
			if err != nil {
				continue // incomplete: being written, or left by a crash
			}
			var en entry
			if json.Unmarshal(b, &en) != nil {
				continue
			}
			c := Cached{Digest: en.Digest, Arch: en.Arch, Ref: en.Ref, Root: filepath.Join(ed, "root.squashfs")}
			if fi, err := os.Stat(c.Root); err == nil {
				c.Size = fi.Size()
			}
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b Cached) int { return strings.Compare(a.Ref+a.Arch, b.Ref+b.Arch) })
	return out, nil
}

// Remove deletes the cached images that what names: "all", a digest or
// a prefix of one of at least 12 characters ("sha256:" and the hex, or
// the hex alone), or the reference an image was converted from. It
// returns how many it removed. A VM that already opened a root keeps it.
func Remove(dir, what string) (int, error) {
	imgs, err := List(dir)
	if err != nil {
		return 0, err
	}
	hex := strings.TrimPrefix(what, "sha256:")
	n := 0
	for _, c := range imgs {
		match := what == "all" || c.Ref == what ||
			len(hex) >= 12 && strings.HasPrefix(strings.TrimPrefix(c.Digest, "sha256:"), hex)
		if !match {
			continue
		}
		// Renamed first, so no reader sees half an entry; the
		// new name's lock makes a crash here garbage for a sweep.
		ed := filepath.Dir(c.Root)
		trash, l, err := mkdirLocked(filepath.Dir(ed), removingPrefix, false)
		if err != nil {
			return n, fmt.Errorf("removing %s: %w", c.Digest, err)
		}
		err = os.Rename(ed, trash)
		if err == nil {
			err = os.RemoveAll(trash)
		}
		l.unlock()
		if err != nil {
			return n, fmt.Errorf("removing %s: %w", c.Digest, err)
		}
		removeRefsTo(dir, c.Digest)
		n++
	}
	if what == "all" {
		os.RemoveAll(filepath.Join(dir, "refs"))
	}
	return n, nil
}

// removeRefsTo removes the records of tags and indexes that resolved to
// digest.
func removeRefsTo(dir, digest string) {
	refs := filepath.Join(dir, "refs")
	entries, _ := os.ReadDir(refs)
	for _, e := range entries {
		p := filepath.Join(refs, e.Name())
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if _, d, ok := strings.Cut(strings.TrimSpace(string(b)), "\n"); ok && d == digest {
			os.Remove(p)
		}
	}
}
