package oci

import "context"

// Hooks for the tests of package oci_test.

// Names of the cache's temporary directories and lock files.
const (
	ArchivePrefix  = archivePrefix
	RemovingPrefix = removingPrefix
	LockSuffix     = lockSuffix
)

// EntryDir is where the cache dir keeps the root of digest.
func EntryDir(dir, digest string) string { return entryDir(dir, digest) }

// LockEntry takes the lock of digest's entry in the cache dir, as a
// conversion does, and returns its release.
func LockEntry(ctx context.Context, dir, digest string) (unlock func(), err error) {
	l, err := lockEntry(ctx, Options{Dir: dir}, digest)
	if err != nil {
		return nil, err
	}
	return l.unlock, nil
}

// MkdirLocked makes a temporary directory of the cache, as Prepare and
// Remove do, and returns it and its release.
func MkdirLocked(parent, prefix string) (string, func(), error) {
	dir, l, err := mkdirLocked(parent, prefix, true)
	if err != nil {
		return "", nil, err
	}
	return dir, l.unlock, nil
}
