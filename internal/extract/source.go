package extract

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"io"
	"strings"

	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"
)

// Source is one packed asset and what it must decode to. It says nothing
// of where or how the bytes are written: WriteFile and Cache.Path take
// that (a path, a file name, a mode) beside it.
type Source struct {
	Name   string // asset name for errors, e.g. "kernel"
	XZ     string // the xz stream: one stream of plain LZMA2 blocks
	Size   int64  // decoded length in bytes
	SHA256 string // hex SHA-256 of the decoded bytes

	// Raw, if not nil, holds the already decoded bytes; writers use it
	// instead of decoding XZ again. Raw is verified again before it is
	// written, so a caller that modified it gets a *ChecksumError.
	Raw []byte

	// Derive, if not nil, makes the decoded bytes instead of XZ: for an
	// asset derived from another (the vmlinux decoded from a bzImage).
	// It runs only when the bytes are needed (never on a warm cache
	// hit); its result is verified like any other, and its error is
	// reported as a *ChecksumError naming the asset.
	Derive func() ([]byte, error)
}

// Decode decodes src and returns exactly src.Size bytes, or a
// *ChecksumError if the blob does not decode to the promised bytes. It
// takes the fast path (see decodeFast), and a stream of several blocks
// decodes on several goroutines.
func Decode(src Source) ([]byte, error) {
	src, err := derived(src)
	if err != nil {
		return nil, err
	}
	if raw, err := decodeFast(context.Background(), src); raw != nil || err != nil {
		return raw, err
	}
	r, err := NewReader(src)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, src.Size)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, err // a *ChecksumError: the reader never ends early with io.EOF
	}
	// The stream must end here, and the final read is where the length
	// and SHA-256 are checked.
	var one [1]byte
	for {
		_, err := r.Read(one[:])
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// NewReader returns a reader of the decoded bytes of src. The reader
// hashes what it returns; at the end of the stream it returns io.EOF only
// if the length and SHA-256 match, and a *ChecksumError otherwise. A
// decoding error is reported as a *ChecksumError too.
//
// The bytes a caller reads before the end are not yet verified: code that
// must not act on unverified bytes uses Decode or writes a file.
func NewReader(src Source) (io.Reader, error) {
	src, err := derived(src)
	if err != nil {
		return nil, err
	}
	r := &reader{src: src, h: sha256.New()}
	if src.Raw != nil {
		// Decoded and verified before; verified again at the end, so a
		// modified Raw is reported rather than streamed as genuine.
		r.dec = bytes.NewReader(src.Raw)
		return r, nil
	}
	// DictCap is the lower bound of the dictionary; the stream header's
	// dictionary size (about the asset size) wins when it is larger.
	cfg := xz.ReaderConfig{DictCap: lzma.MinDictCap, SingleStream: true}
	// strings.Reader implements io.ByteReader: never decode from an
	// unbuffered reader, the decoder reads one byte at a time.
	dec, err := cfg.NewReader(strings.NewReader(src.XZ))
	if err != nil {
		return nil, r.fail(err)
	}
	r.dec = dec
	return r, nil
}

// reader is the verifying reader NewReader returns.
type reader struct {
	src Source
	dec io.Reader
	h   hash.Hash
	n   int64
	err error // sticky
}

func (r *reader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	// Never return more than the promised length: one byte beyond it
	// is enough to know the stream is too long.
	if max := r.src.Size - r.n + 1; int64(len(p)) > max {
		p = p[:max]
	}
	n, err := r.dec.Read(p)
	r.h.Write(p[:n])
	r.n += int64(n)
	switch {
	case r.n > r.src.Size:
		return 0, r.fail(nil)
	case err == io.EOF:
		if verr := r.verify(); verr != nil {
			return n, verr
		}
		r.err = io.EOF
		return n, io.EOF
	case err != nil:
		return n, r.fail(err)
	}
	return n, nil
}

// verify checks length and hash at the end of the stream.
func (r *reader) verify() error {
	if r.n != r.src.Size {
		return r.fail(nil)
	}
	if got := hex.EncodeToString(r.h.Sum(nil)); got != r.src.SHA256 {
		return r.fail(nil)
	}
	return nil
}

// fail makes and records the *ChecksumError for this stream.
func (r *reader) fail(decodeErr error) error {
	e := &ChecksumError{
		Name:       r.src.Name,
		WantSHA256: r.src.SHA256,
		WantSize:   r.src.Size,
		GotSize:    r.n,
		Err:        decodeErr,
	}
	if decodeErr == nil {
		e.GotSHA256 = hex.EncodeToString(r.h.Sum(nil))
	}
	r.err = e
	return e
}

// VerifyFile reads the file at path and reports whether it holds exactly
// the decoded bytes of src: nil if so, a *ChecksumError naming path if
// not, or the error that stopped the read.
func VerifyFile(path string, src Source) error {
	f, err := openNoFollow(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return err
	}
	got := hex.EncodeToString(h.Sum(nil))
	if n != src.Size || got != src.SHA256 {
		return &ChecksumError{Name: src.Name, Path: path, WantSHA256: src.SHA256, GotSHA256: got, WantSize: src.Size, GotSize: n}
	}
	return nil
}
