package oci

import (
	"os"
	"path/filepath"
	"strings"
)

// sweep removes from the cache dir what writers that died left behind:
// the temporary directories (an extracted OCI archive, an entry being
// removed) and the incomplete entries (a conversion cut short) whose
// lock nobody holds, and the lock files nobody holds. It costs a read
// of the cache directory and of each converter version's directory, and
// a stat of each entry's image.json; errors are ignored, as this is
// housekeeping.
func sweep(dir string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	sweepIn(dir, ents, true)
	for _, v := range ents {
		if v.IsDir() && v.Name() != "refs" && !strings.HasPrefix(v.Name(), ".") {
			vd := filepath.Join(dir, v.Name())
			if ents, err := os.ReadDir(vd); err == nil {
				sweepIn(vd, ents, false)
			}
		}
	}
}

// sweepIn sweeps the entries ents of one directory: the cache directory
// itself (top) or a converter version's, whose directories not hidden
// are entries.
func sweepIn(parent string, ents []os.DirEntry, top bool) {
	var seen string // the last name swept: a lock file sorts after what it guards
	for _, e := range ents {
		base, isLock := strings.CutSuffix(e.Name(), lockSuffix)
		if e.IsDir() {
			base, isLock = e.Name(), false
		}
		if base == seen {
			continue
		}
		entry := false
		switch {
		case top:
			if !strings.HasPrefix(base, archivePrefix) {
				continue
			}
		case strings.HasPrefix(base, removingPrefix):
		case strings.HasPrefix(base, "."):
			continue
		case isLock:
			entry = true
		case !e.IsDir() || complete(filepath.Join(parent, base)):
			continue
		default:
			entry = true
		}
		seen = base
		path := filepath.Join(parent, base)
		l, err := tryLock(path + lockSuffix)
		if err != nil {
			continue // a live writer holds it, or no locks here
		}
		// An entry may have been completed between the look above
		// and the lock.
		if !entry || !complete(path) {
			os.RemoveAll(path)
		}
		l.unlock()
	}
}

// complete reports whether the entry directory ed is whole: its
// image.json is written last.
func complete(ed string) bool {
	_, err := os.Stat(filepath.Join(ed, "image.json"))
	return err == nil
}
