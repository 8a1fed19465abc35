package oci

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/supermachine-go/supermachine-kernel/internal/poll"
)

// The cache's locks are flock(2) locks on lock files beside what they
// guard: the kernel drops a lock when its holder dies, however it dies,
// so a lock nobody holds means that what it guards has no live writer.
// A lock file is deleted by its holder on release, so the cache keeps
// none; whoever takes a lock checks that its path still names the file
// it locked (not one deleted meanwhile), and retries if not.

// errBusy is what tryLock returns when another open file holds the lock.
var errBusy = errors.New("held by another process")

// errNoLocks wraps the failure of flock(2) where the file system or the
// system has no locks; the cache then works unlocked: concurrent
// conversions of one image each convert, and nothing is swept.
var errNoLocks = errors.New("file locks unsupported")

// lockWait is how often a wait for a lock tries again: a conversion takes
// from a fraction of a second to tens of seconds, and a try is a few
// system calls.
var lockWait = poll.Backoff{Initial: 5 * time.Millisecond, Max: 200 * time.Millisecond}

// fileLock is a held lock. Its zero value (nil f) holds nothing: where
// locks are unsupported.
type fileLock struct {
	f    *os.File
	path string
}

// unlock deletes the lock file and releases the lock. The file goes
// first, while held: anyone who opened it meanwhile finds, once the lock
// is theirs, that the path names another file or none.
func (l *fileLock) unlock() {
	if l.f == nil {
		return
	}
	os.Remove(l.path)
	l.f.Close()
	l.f = nil
}

// tryLock takes the lock file at path, creating it if needed, without
// waiting. It returns errBusy if another holder has it, an error
// matching errNoLocks if locks are unsupported there.
func tryLock(path string) (*fileLock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	created := err == nil
	if errors.Is(err, fs.ErrExist) {
		f, err = os.OpenFile(path, os.O_RDWR, 0)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, errBusy // released and deleted meanwhile: try again
		}
	}
	if err != nil {
		return nil, err
	}
	l, err := adopt(f)
	if created && errors.Is(err, errNoLocks) {
		os.Remove(path) // useless here: leave nothing
	}
	return l, err
}

// adopt locks the open lock file f and checks that its path still names
// it.
func adopt(f *os.File) (*fileLock, error) {
	if err := flock(f); err != nil {
		f.Close()
		return nil, err
	}
	held, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if now, err := os.Stat(f.Name()); err != nil || !os.SameFile(held, now) {
		// Released and deleted by its last holder after we opened
		// it: the lock is whatever the path names now.
		f.Close()
		return nil, errBusy
	}
	return &fileLock{f: f, path: f.Name()}, nil
}

// waitLock takes the lock file at path, waiting while another holder
// has it until ctx ends; the error then says that it waited for what.
// busy, if not nil, is called once when the wait begins. Where locks are
// unsupported it returns a lock that holds nothing.
func waitLock(ctx context.Context, path, what string, busy func()) (*fileLock, error) {
	var l *fileLock
	err := poll.Until(ctx, lockWait, what+" (lock file "+path+")", func() (bool, error) {
		var err error
		l, err = tryLock(path)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, errBusy):
			if busy != nil {
				busy()
				busy = nil
			}
			return false, nil
		case errors.Is(err, errNoLocks):
			l = &fileLock{}
			return true, nil
		}
		return false, poll.Stop(err)
	})
	if err != nil {
		return nil, err
	}
	return l, nil
}

// lockEntry takes the lock of the cache entry of digest: whoever holds it
// is the only one writing or removing the entry. It waits for a
// conversion of the same image by another process or goroutine.
func lockEntry(ctx context.Context, o Options, digest string) (*fileLock, error) {
	ed := entryDir(o.Dir, digest)
	if err := os.MkdirAll(filepath.Dir(ed), 0o755); err != nil {
		return nil, fmt.Errorf("image cache: %w", err)
	}
	l, err := waitLock(ctx, ed+lockSuffix, "another conversion of "+digest+" to end", func() {
		o.progress("waiting for another conversion of %s", digest)
	})
	if err != nil {
		return nil, fmt.Errorf("image cache: %w", err)
	}
	return l, nil
}

// lockSuffix makes the name of the lock file of a cache entry or a
// temporary directory from its own.
const lockSuffix = ".lock"

// Prefixes of the temporary directories of the cache, each guarded by
// its lock file (see mkdirLocked).
const (
	archivePrefix  = ".archive-"  // <dir>/.archive-*: an OCI archive's layout, extracted
	removingPrefix = ".removing-" // <dir>/<version>/.removing-*: an entry being removed
)

// mkdirLocked makes a temporary directory named prefix followed by a
// random string in parent, and holds its lock until unlock: a sweep
// removes it only once its maker is gone. mkdir makes the directory;
// false leaves that to the caller (a rename into place).
func mkdirLocked(parent, prefix string, mkdir bool) (string, *fileLock, error) {
	for range 100 {
		// The lock comes first: a directory without a held lock is
		// garbage to a sweep.
		f, err := os.CreateTemp(parent, prefix+"*"+lockSuffix)
		if err != nil {
			return "", nil, err
		}
		l, err := adopt(f)
		switch {
		case errors.Is(err, errBusy):
			continue // a sweep took it in the instant before the lock, and deletes it
		case errors.Is(err, errNoLocks):
			os.Remove(f.Name())
			l = &fileLock{}
		case err != nil:
			os.Remove(f.Name())
			return "", nil, err
		}
		dir := strings.TrimSuffix(f.Name(), lockSuffix)
		if mkdir {
			// A directory of that name is a leftover whose lock
			// is now ours.
			os.RemoveAll(dir)
			if err := os.Mkdir(dir, 0o755); err != nil {
				l.unlock()
				return "", nil, err
			}
		}
		return dir, l, nil
	}
	return "", nil, fmt.Errorf("cannot lock a new temporary directory %s* in %s", prefix, parent)
}
