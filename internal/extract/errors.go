package extract

import (
	"errors"
	"fmt"

	"github.com/supermachine-go/supermachine-kernel/internal/atomicfile"
)

// ErrChecksum is matched (with errors.Is) by every error that reports
// bytes that do not verify: a blob that does not decode, or decodes to the
// wrong length or SHA-256. See ChecksumError.
var ErrChecksum = errors.New("checksum mismatch")

// ErrSymlink is matched by the error returned when the destination of a
// write is a symbolic link (dangling or not). Writes never follow or replace
// a symlink at the destination: the caller decides what the link means.
// It is atomicfile.ErrSymlink.
var ErrSymlink = atomicfile.ErrSymlink

// ChecksumError reports that an asset did not verify. It matches
// ErrChecksum with errors.Is.
type ChecksumError struct {
	Name string // asset name, e.g. "kernel"
	Path string // the file that was checked; "" for in-memory bytes

	WantSHA256 string // hex SHA-256 the manifest promises
	GotSHA256  string // hex SHA-256 of what was produced; "" if decoding failed
	WantSize   int64  // length the manifest promises
	GotSize    int64  // length that was produced (so far, if Err != nil)

	Err error // the decoder's error, if decoding failed
}

// Error says which asset (and file) did not verify, and how.
func (e *ChecksumError) Error() string {
	where := e.Name
	if e.Path != "" {
		where = e.Name + " (" + e.Path + ")"
	}
	switch {
	case e.Err != nil:
		return fmt.Sprintf("%s: corrupt: decoding failed after %d of %d bytes: %v", where, e.GotSize, e.WantSize, e.Err)
	case e.GotSize != e.WantSize:
		return fmt.Sprintf("%s: corrupt: %d bytes, want %d", where, e.GotSize, e.WantSize)
	default:
		return fmt.Sprintf("%s: corrupt: SHA-256 %s, want %s", where, e.GotSHA256, e.WantSHA256)
	}
}

// Unwrap returns the decoder's error, if any.
func (e *ChecksumError) Unwrap() error { return e.Err }

// Is reports whether target is ErrChecksum.
func (e *ChecksumError) Is(target error) bool { return target == ErrChecksum }
