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

	"github.com/google/go-containerregistry/pkg/name"
)

// Cached is an image in the cache, as List reports it.
type Cached struct {
	Digest string // the cache key (see Image.Digest)
	Arch   string
	Ref    string // the reference it was converted from
	// Tags are the other registry tags that named this image when the
	// cache last resolved them (itself or through an index), in full
	// (registry/repository:tag); one pulled again since may have moved.
	Tags []string
	Root string // the root image's path
	Size int64  // the root image's size in bytes
}

// List returns the images in the cache directory dir of every converter
// version, sorted by reference.
//
// It first removes what writers that died left in the cache (see
// Prepare).
func List(dir string) ([]Cached, error) {
	sweep(dir)
	tags := tagsByImage(dir)
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
			own := fullName(en.Ref)
			for _, t := range tags[en.Digest+" "+en.Arch] {
				if t != own {
					c.Tags = append(c.Tags, t)
				}
			}
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
// the hex alone), the reference an image was converted from, or one of
// its Tags (in any form that names it: alpine:3 for
// index.docker.io/library/alpine:3). It returns how many it removed. A
// VM that already opened a root keeps it.
func Remove(dir, what string) (int, error) {
	imgs, err := List(dir)
	if err != nil {
		return 0, err
	}
	hex := strings.TrimPrefix(what, "sha256:")
	tag := fullName(what)
	n := 0
	for _, c := range imgs {
		match := what == "all" || c.Ref == what || tag != "" && slices.Contains(c.Tags, tag) ||
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

// tagsByImage reads the ref records: for each image, keyed by its digest
// and arch, the tags that last resolved to it, sorted.
func tagsByImage(dir string) map[string][]string {
	top := map[string]string{}      // tag → the digest it resolved to
	platform := map[string]string{} // "index-digest arch" → image digest
	entries, _ := os.ReadDir(filepath.Join(dir, "refs"))
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, "refs", e.Name()))
		if err != nil {
			continue
		}
		key, digest, ok := strings.Cut(strings.TrimSpace(string(b)), "\n")
		if !ok {
			continue
		}
		if t, ok := strings.CutPrefix(key, "tag "); ok {
			top[t] = digest
		} else if p, ok := strings.CutPrefix(key, "platform "); ok {
			if idx, arch, ok := strings.Cut(p, " linux/"); ok {
				platform[idx+" "+arch] = digest
			}
		}
	}
	out := map[string][]string{}
	for t, d := range top {
		for _, arch := range []string{"amd64", "arm64"} {
			img := d
			if pd, ok := platform[d+" "+arch]; ok {
				img = pd
			}
			out[img+" "+arch] = append(out[img+" "+arch], t)
		}
	}
	for _, ts := range out {
		slices.Sort(ts)
	}
	return out
}

// fullName is a registry tag in the form the ref records keep it
// (registry/repository:tag), or "" for what names no tag.
func fullName(ref string) string {
	t, err := name.NewTag(ref)
	if err != nil {
		return ""
	}
	return t.Name()
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
