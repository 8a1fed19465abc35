package extract

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/supermachine-go/supermachine-kernel/internal/atomicfile"
)

// bufSize is the size of the copy buffer between decoder and file.
const bufSize = 256 << 10

// testHookChunk, if set, runs after each chunk is written to a
// temporary file (tests use it to stop a writer mid-way).
var testHookChunk func(tmp string, written int64)

// WriteFile decodes src and writes it to dest atomically with permission
// bits mode, replacing a regular file already at dest. The parent directory
// must exist unless mkdirParents is set, in which case it is created
// (with mode 0755, as needed).
//
// dest is never left partial or unverified: the bytes are written with
// package atomicfile to a temporary file beside dest, verified, synced,
// given their mode and renamed over dest. If dest is a symbolic link,
// dangling or not, WriteFile refuses (ErrSymlink) rather than follow or
// replace it; if it is a directory, the error matches syscall.EISDIR.
//
// Errors are *fs.PathError values naming dest, whose Err matches with
// errors.Is the underlying cause: fs.ErrNotExist (missing parent),
// syscall.EROFS or fs.ErrPermission (read-only directory),
// syscall.ENOSPC, ErrSymlink, syscall.EISDIR, ErrChecksum (and errors.As
// finds the *ChecksumError), or ctx.Err().
func WriteFile(ctx context.Context, dest string, src Source, mode fs.FileMode, mkdirParents bool) error {
	fail := func(err error) error { return &fs.PathError{Op: "extract " + src.Name + " to", Path: dest, Err: err} }
	if mkdirParents {
		if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
			return fail(fmt.Errorf("create parent directory: %w", err))
		}
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	f, err := atomicfile.Create(dest, mode)
	if err != nil {
		return fail(err)
	}
	defer f.Cleanup()
	if err := copyVerified(ctx, f, src); err != nil {
		return fail(err)
	}
	if err := f.Replace(); err != nil {
		return fail(err)
	}
	return nil
}

// copyVerified writes the decoded bytes of src to f and verifies them.
func copyVerified(ctx context.Context, f *atomicfile.File, src Source) error {
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
				return err
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
				return err
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
