package extract

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// StaleAge is how old an abandoned temporary file must be before a later
// write removes it. A live writer holds a lock on its temporary file and
// keeps writing to it, so age alone never removes a live one where locks
// exist; the age covers the instant between creating and locking a file.
const StaleAge = time.Minute

// bufSize is the size of the copy buffer between decoder and file.
const bufSize = 256 << 10

// testHookChunk, if set, runs after each chunk is written to a
// temporary file (tests use it to stop a writer mid-way).
var testHookChunk func(tmp string, written int64)

// WriteFile decodes src and writes it to dest atomically with mode
// src.Mode, replacing a regular file already at dest. The parent directory
// must exist unless mkdirParents is set, in which case it is created
// (with mode 0755, as needed).
//
// dest is never left partial or unverified: the bytes are written to a
// temporary file beside dest, synced, verified, given their mode and
// renamed over dest; then the directory is synced. If dest is a symbolic
// link, dangling or not, WriteFile refuses (ErrSymlink) rather than follow
// or replace it; if it is a directory, the error matches syscall.EISDIR.
//
// Errors are *fs.PathError values naming dest, whose Err matches with
// errors.Is the underlying cause: fs.ErrNotExist (missing parent),
// syscall.EROFS or fs.ErrPermission (read-only directory),
// syscall.ENOSPC, ErrSymlink, syscall.EISDIR, ErrChecksum (and errors.As
// finds the *ChecksumError), or ctx.Err().
func WriteFile(ctx context.Context, dest string, src Source, mkdirParents bool) error {
	op := "extract " + src.Name + " to"
	if src.XZ == "" && src.Derive == nil {
		op = "write" // WriteBytes: not an embedded asset
	}
	fail := func(err error) error { return &fs.PathError{Op: op, Path: dest, Err: err} }

	if err := checkDest(dest); err != nil {
		return fail(err)
	}
	dir, base := filepath.Split(dest)
	if dir == "" {
		dir = "."
	}
	dir = filepath.Clean(dir)
	if mkdirParents {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fail(fmt.Errorf("create parent directory: %w", err))
		}
	}
	cleanStale(dir, base)
	f, err := writeTemp(ctx, dir, base, src)
	if err != nil {
		return fail(err)
	}
	defer f.Close()
	if err := os.Rename(f.Name(), dest); err != nil {
		os.Remove(f.Name())
		return fail(fmt.Errorf("rename %s: %w", filepath.Base(f.Name()), unwrapPath(err)))
	}
	if err := syncDir(dir); err != nil {
		return fail(fmt.Errorf("sync directory %s: %w", dir, unwrapPath(err)))
	}
	return nil
}

// checkDest rejects destinations that are symbolic links or directories.
func checkDest(dest string) error {
	fi, err := os.Lstat(dest)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		// ENOTDIR and the like: let the create report the missing
		// parent; other errors are clearer now.
		if errors.Is(err, syscall.ENOTDIR) {
			return nil
		}
		return unwrapPath(err)
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

// writeTemp writes the verified bytes of src to a new temporary file in
// dir, with src.Mode, synced. It returns the file, still open and locked;
// on error nothing is left behind.
func writeTemp(ctx context.Context, dir, base string, src Source) (_ *os.File, err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("parent directory %s does not exist: %w", dir, unwrapPath(err))
		}
		return nil, fmt.Errorf("cannot create a file in %s: %w", dir, unwrapPath(err))
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	lockTemp(f)
	if err := copyVerified(ctx, f, src); err != nil {
		return nil, err
	}
	if err := f.Chmod(src.Mode); err != nil {
		return nil, fmt.Errorf("chmod %s: %w", f.Name(), unwrapPath(err))
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("sync %s: %w", f.Name(), unwrapPath(err))
	}
	return f, nil
}

// copyVerified writes the decoded bytes of src to f and verifies them.
func copyVerified(ctx context.Context, f *os.File, src Source) error {
	writeErr := func(err error) error {
		return fmt.Errorf("write %s: %w", f.Name(), unwrapPath(err))
	}
	src, err := derived(src)
	if err != nil {
		return err
	}
	raw, verified := src.Raw, false
	if raw == nil {
		// The fast path decodes all of it into memory, verified.
		var err error
		if raw, err = decodeFast(ctx, src); err != nil {
			return err
		}
		verified = raw != nil
	}
	if raw != nil {
		if !verified {
			// Verify before writing: in memory, hashing is cheap.
			sum := sha256.Sum256(raw)
			if got := hex.EncodeToString(sum[:]); int64(len(raw)) != src.Size || got != src.SHA256 {
				return &ChecksumError{Name: src.Name, WantSHA256: src.SHA256, GotSHA256: got, WantSize: src.Size, GotSize: int64(len(raw))}
			}
		}
		for off := 0; off < len(raw); off += bufSize {
			if err := ctx.Err(); err != nil {
				return err
			}
			end := min(off+bufSize, len(raw))
			if _, err := f.Write(raw[off:end]); err != nil {
				return writeErr(err)
			}
			if testHookChunk != nil {
				testHookChunk(f.Name(), int64(end))
			}
		}
		return nil
	}
	// The reference decoder: decode, hash and write as a stream.
	r, err := NewReader(src)
	if err != nil {
		return err
	}
	buf := make([]byte, bufSize)
	var written int64
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, rerr := io.ReadFull(r, buf)
		if n > 0 {
			if _, err := f.Write(buf[:n]); err != nil {
				return writeErr(err)
			}
			written += int64(n)
			if testHookChunk != nil {
				testHookChunk(f.Name(), written)
			}
		}
		switch rerr {
		case nil:
		case io.EOF, io.ErrUnexpectedEOF:
			// The verifying reader returns io.EOF only after the
			// length and SHA-256 matched.
			return nil
		default:
			return rerr
		}
	}
}

// cleanStale removes temporary files that writers of dir/base left
// behind when they died: those no live process holds, older than
// StaleAge. Errors are ignored: this is housekeeping.
func cleanStale(dir, base string) {
	matches, _ := filepath.Glob(filepath.Join(dir, "."+escapeGlob(base)+".*tmp-*"))
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

// WriteBytes writes data to dest with mode the same way as WriteFile
// (temporary file, fsync, rename, fsync of the directory; a symlink or
// directory at dest is refused): the one atomic writer for bytes that are
// not an embedded asset, such as a generated initramfs or a packed blob.
func WriteBytes(ctx context.Context, dest string, data []byte, mode fs.FileMode) error {
	sum := sha256.Sum256(data)
	return WriteFile(ctx, dest, Source{
		Name: filepath.Base(dest), Mode: mode, Raw: data,
		Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:]),
	}, false)
}
