package atomicfile

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// StaleAge is how old an abandoned temporary file must be before Create
// removes it. A live writer holds a lock on its temporary file, so where
// locks exist age alone never removes a live one; the age covers the
// instant between creating a temporary file and locking it, and systems
// without flock.
const StaleAge = time.Minute

// ErrSymlink is matched by the error returned when the destination is a
// symbolic link, dangling or not: the caller decides what the link means.
var ErrSymlink = errors.New("destination is a symbolic link")

// chunkSize is how much WriteFile writes between two checks of its
// context.
const chunkSize = 256 << 10

// A File is a temporary file that becomes the destination on Replace or
// Link. Call Cleanup when done with it (it is a no-op after a commit), so
// that an error leaves nothing behind.
type File struct {
	f         *os.File
	dest, dir string
	perm      fs.FileMode
	owner     *Owner
	done      bool
}

// Options are the settings of CreateWith beyond the permission.
type Options struct {
	// Owner, when not nil, is given to the file at commit.
	Owner *Owner
	// ReplaceSymlink makes a symbolic link at the destination be
	// replaced by the file, as rename(2) replaces it (the link's target
	// is untouched), where Create refuses it with ErrSymlink.
	ReplaceSymlink bool
}

// Owner is a file's user and group ID; -1 in either leaves that one as
// the writing process created it.
type Owner struct {
	UID, GID int
}

// Create starts writing dest: it refuses a destination that is a symbolic
// link or a directory, removes the abandoned temporary files of dest, and
// creates and locks a new one in dest's directory, which must exist.
// perm is the permission of the file once committed.
//
// Errors say what was wrong, and match their cause with errors.Is:
// fs.ErrNotExist (missing directory), fs.ErrPermission or syscall.EROFS,
// ErrSymlink, syscall.EISDIR.
func Create(dest string, perm fs.FileMode) (*File, error) {
	return CreateWith(dest, perm, Options{})
}

// CreateWith is Create with the settings of o: an owner for the file and
// whether a symbolic link at dest is replaced rather than refused.
func CreateWith(dest string, perm fs.FileMode, o Options) (*File, error) {
	if err := checkDest(dest, o.ReplaceSymlink); err != nil {
		return nil, err
	}
	dir, base := filepath.Split(dest)
	if dir == "" {
		dir = "."
	}
	dir = filepath.Clean(dir)
	cleanStale(dir, base)
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("parent directory %s does not exist: %w", dir, unwrapPath(err))
		}
		return nil, fmt.Errorf("cannot create a file in %s: %w", dir, unwrapPath(err))
	}
	lock(f)
	return &File{f: f, dest: dest, dir: dir, perm: perm, owner: o.Owner}, nil
}

// Name returns the path of the temporary file.
func (f *File) Name() string { return f.f.Name() }

// Write writes p to the temporary file. Its errors name the temporary
// file and wrap the cause (syscall.ENOSPC, for one).
func (f *File) Write(p []byte) (int, error) {
	n, err := f.f.Write(p)
	if err != nil {
		err = fmt.Errorf("write %s: %w", f.f.Name(), unwrapPath(err))
	}
	return n, err
}

// Replace commits the file: it syncs it, gives it its mode, renames it
// over the destination and syncs the directory.
func (f *File) Replace() error {
	if err := f.finish(); err != nil {
		return err
	}
	if err := os.Rename(f.f.Name(), f.dest); err != nil {
		return fmt.Errorf("rename %s: %w", filepath.Base(f.f.Name()), unwrapPath(err))
	}
	f.done = true
	return f.syncDir()
}

// Link commits the file without replacing: it syncs it, gives it its
// mode and hard-links it to the destination. If a file is already there,
// Link leaves it and reports existed: concurrent writers of identical
// bytes (a content-addressed cache) all end with the first one's file.
// Where the file system has no hard links, Link renames instead, which
// replaces. The temporary name is removed and the directory synced.
func (f *File) Link() (existed bool, err error) {
	if err := f.finish(); err != nil {
		return false, err
	}
	tmp := f.f.Name()
	if err := os.Link(tmp, f.dest); err != nil {
		if errors.Is(err, fs.ErrExist) {
			existed = true
		} else if err := os.Rename(tmp, f.dest); err != nil {
			// No hard links here (some network and FUSE file
			// systems): rename.
			return false, fmt.Errorf("rename %s: %w", filepath.Base(tmp), unwrapPath(err))
		}
	}
	os.Remove(tmp)
	f.done = true
	return existed, f.syncDir()
}

// Cleanup closes the temporary file and, unless it was committed, removes
// it. It is safe to call more than once and after a commit.
func (f *File) Cleanup() {
	f.f.Close()
	if !f.done {
		os.Remove(f.f.Name())
		f.done = true
	}
}

// finish gives the temporary file its owner and mode and syncs it. The
// owner goes first: changing it clears the setuid and setgid bits.
func (f *File) finish() error {
	if f.done {
		return errors.New("atomicfile: " + f.dest + " already committed or cleaned up")
	}
	if o := f.owner; o != nil {
		if err := f.f.Chown(o.UID, o.GID); err != nil {
			return fmt.Errorf("chown %s to %d:%d: %w", f.f.Name(), o.UID, o.GID, unwrapPath(err))
		}
	}
	if err := f.f.Chmod(f.perm); err != nil {
		return fmt.Errorf("chmod %s: %w", f.f.Name(), unwrapPath(err))
	}
	if err := f.f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", f.f.Name(), unwrapPath(err))
	}
	return nil
}

// syncDir makes the new directory entry durable.
func (f *File) syncDir() error {
	if err := syncDir(f.dir); err != nil {
		return fmt.Errorf("sync directory %s: %w", f.dir, unwrapPath(err))
	}
	return nil
}

// WriteFile writes data to dest with permission perm, atomically: dest
// holds either what it held before or all of data, even after a crash. A
// regular file at dest is replaced; a symbolic link or a directory is
// refused. nil and empty data both write an empty file.
//
// Errors are *fs.PathError values naming dest, whose Err matches the
// cause with errors.Is (see Create), or ctx.Err().
func WriteFile(ctx context.Context, dest string, data []byte, perm fs.FileMode) error {
	fail := func(err error) error { return &fs.PathError{Op: "write", Path: dest, Err: err} }
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	f, err := Create(dest, perm)
	if err != nil {
		return fail(err)
	}
	defer f.Cleanup()
	for off := 0; off < len(data); off += chunkSize {
		if err := ctx.Err(); err != nil {
			return fail(err)
		}
		if _, err := f.Write(data[off:min(off+chunkSize, len(data))]); err != nil {
			return fail(err)
		}
	}
	if err := f.Replace(); err != nil {
		return fail(err)
	}
	return nil
}

// checkDest rejects destinations that are directories, and symbolic
// links unless replaceSymlink.
func checkDest(dest string, replaceSymlink bool) error {
	fi, err := os.Lstat(dest)
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		// Missing, or a parent is not a directory: the create
		// reports it.
		return nil
	case err != nil:
		return unwrapPath(err)
	case fi.Mode()&fs.ModeSymlink != 0 && replaceSymlink:
		return nil
	case fi.Mode()&fs.ModeSymlink != 0:
		target, _ := os.Readlink(dest)
		if _, err := os.Stat(dest); err != nil {
			return fmt.Errorf("%w (dangling, to %q): refusing to follow or replace it", ErrSymlink, target)
		}
		return fmt.Errorf("%w (to %q): refusing to follow or replace it", ErrSymlink, target)
	case fi.IsDir():
		return syscall.EISDIR
	}
	return nil
}

// cleanStale removes the temporary files of dir/base that writers left
// behind when they died: those no live process holds, older than
// StaleAge. Errors are ignored: this is housekeeping.
func cleanStale(dir, base string) {
	matches, _ := filepath.Glob(filepath.Join(dir, "."+escapeGlob(base)+".tmp-*"))
	for _, m := range matches {
		fi, err := os.Lstat(m)
		if err != nil || !fi.Mode().IsRegular() || time.Since(fi.ModTime()) < StaleAge {
			continue
		}
		if abandoned(m) {
			os.Remove(m)
		}
	}
}

// escapeGlob quotes the glob metacharacters in s.
func escapeGlob(s string) string {
	if !strings.ContainsAny(s, `*?[\`) {
		return s
	}
	var b strings.Builder
	for _, c := range s {
		if strings.ContainsRune(`*?[\`, c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// unwrapPath strips an *fs.PathError or *os.LinkError down to its cause,
// for errors that are about to be wrapped in one naming the destination.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err
	}
	return err
}
