package extract

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"
)

// packPiece packs the first n bytes of the decoded src with xz(1) and the
// given options, or skips the test or fuzz target if there is no xz.
func packPiece(t testing.TB, src Source, n int, opts ...string) (raw []byte, packed []byte) {
	t.Helper()
	xzBin, err := exec.LookPath("xz")
	if err != nil {
		t.Skip("skipping: no xz in PATH to pack the seeds")
	}
	raw = decoded(t, src)[:n]
	cmd := exec.Command(xzBin, append([]string{"--format=xz", "-c"}, opts...)...)
	cmd.Stdin = bytes.NewReader(raw)
	if packed, err = cmd.Output(); err != nil {
		if errors.Is(err, syscall.ENOEXEC) {
			// A cross-arch guest that shares the host's files (go test
			// -exec 'supermachine-kernel vmexec --' with GOARCH=arm64)
			// finds the host's xz, which it cannot run.
			t.Skipf("skipping: %s is for another arch: %v", xzBin, err)
		}
		t.Fatal(err)
	}
	return raw, packed
}

var (
	decodedMu sync.Mutex
	decodedBy = map[string][]byte{} // by SHA-256
)

// decoded returns the decoded src, decoding each blob once per process
// (under qemu-user a decode takes seconds).
func decoded(t testing.TB, src Source) []byte {
	t.Helper()
	decodedMu.Lock()
	defer decodedMu.Unlock()
	if b, ok := decodedBy[src.SHA256]; ok {
		return b
	}
	b, err := Decode(src)
	if err != nil {
		t.Fatal(err)
	}
	decodedBy[src.SHA256] = b
	return b
}

// seedStreams are pieces of the real blobs packed as the pipeline packs
// them (one block, CRC-64) and in the other shapes the format allows
// (several blocks, other check types), with their decoded pieces.
func seedStreams(t testing.TB) (raws, streams [][]byte) {
	for _, s := range []struct {
		src  Source
		n    int
		opts []string
	}{
		{busybox(), 48 << 10, []string{"--check=crc64", "-T1", "--lzma2=preset=9e,dict=1MiB"}},
		{busyboxArm64(), 40 << 10, []string{"--check=crc32", "-T1", "--block-size=8KiB", "--lzma2=preset=6,dict=64KiB"}},
		{busybox(), 16 << 10, []string{"--check=none", "-T1", "--lzma2=preset=1,dict=4KiB"}},
		{busyboxArm64(), 16 << 10, []string{"--check=sha256", "-T1", "--block-size=5KiB", "--lzma2=preset=6,dict=8KiB"}},
	} {
		raw, packed := packPiece(t, s.src, s.n, s.opts...)
		raws, streams = append(raws, raw), append(streams, packed)
	}
	return raws, streams
}

// referenceDecode decodes the xz stream x with github.com/ulikunitz/xz as
// NewReader configures it, reading at most limit+1 bytes.
func referenceDecode(x []byte, limit int64) ([]byte, error) {
	r, err := xz.ReaderConfig{DictCap: lzma.MinDictCap, SingleStream: true}.NewReader(bytes.NewReader(x))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(io.LimitReader(r, limit+1))
}

// walkStream walks the xz stream b from the front, as the reference
// decoder reads it: stream header, blocks (header, LZMA2 chunks up to the
// end marker, padding, check), index, footer. With fix it rewrites each
// CRC-32 it passes to match, so that a mutation of the fields behind them
// reaches the checks that follow. It returns the largest LZMA2 dictionary
// code in the block headers it passed (-1 if none).
func walkStream(b []byte, fix bool) (maxDictCode int) {
	maxDictCode = -1
	crc := func(data, sum []byte) {
		if fix {
			binary.LittleEndian.PutUint32(sum, crc32.ChecksumIEEE(data))
		}
	}
	if len(b) < 12 {
		return
	}
	crc(b[6:8], b[8:12])
	check, ok := checkLen[b[7]]
	if !ok {
		return
	}
	pos := 12
	for {
		if pos >= len(b) {
			return
		}
		if b[pos] == 0 {
			break // the index
		}
		hlen := (int(b[pos]) + 1) * 4
		if pos+hlen > len(b) {
			return
		}
		h := b[pos : pos+hlen]
		crc(h[:hlen-4], h[hlen-4:])
		r := bytes.NewReader(h[2 : hlen-4])
		for _, present := range []bool{h[1]&0x40 != 0, h[1]&0x80 != 0} {
			if present {
				binary.ReadUvarint(r)
			}
		}
		if id, err := binary.ReadUvarint(r); err == nil && id == 0x21 {
			r.ReadByte()
			if code, err := r.ReadByte(); err == nil {
				maxDictCode = max(maxDictCode, int(code))
			}
		}
		pos += hlen
		for end := false; !end; {
			if pos >= len(b) {
				return
			}
			c := b[pos]
			pos++
			switch {
			case c == 0:
				end = true
			case c == 1 || c == 2:
				if pos+2 > len(b) {
					return
				}
				pos += 2 + (int(b[pos])<<8 | int(b[pos+1]) + 1)
			case c >= 0x80:
				if pos+4 > len(b) {
					return
				}
				packed := int(b[pos+2])<<8 | int(b[pos+3]) + 1
				pos += 4 + packed
				if c >= 0xc0 {
					pos++
				}
			default:
				return
			}
		}
		pos = (pos+3)&^3 + int(check)
	}
	start := pos
	pos++
	n, k := binary.Uvarint(b[pos:])
	if k <= 0 || n > 1<<16 {
		return
	}
	pos += k
	for range 2 * n {
		_, k := binary.Uvarint(b[pos:])
		if k <= 0 {
			return
		}
		pos += k
	}
	pos += (4 - (pos-start)%4) % 4
	if pos+4+12 > len(b) {
		return
	}
	crc(b[start:pos], b[pos:pos+4])
	pos += 4
	crc(b[pos+4:pos+10], b[pos:pos+4])
	return
}

// FuzzDifferential holds the fast path to the reference decoder on
// mutated pieces of the real blobs: whatever the fast path accepts, the
// reference decoder accepts too, with the same bytes; and Decode (fast
// path first) gives the same bytes and the same verdict as the reference
// decoder alone.
//
// The input picks a seed stream and edits it: each edit is three bytes,
// where, offset and value, and sets the byte at offset from the start
// (where%3 == 0: the stream header and first block header), from the end
// (1: the index and footer), or anywhere (2: offset/256 of the way in).
// With fix, the CRC-32s are then made to match, so that the edits reach
// the checks behind them (flags, padding, sizes, dictionary codes).
func FuzzDifferential(f *testing.F) {
	raws, streams := seedStreams(f)
	for i := range streams {
		f.Add(uint8(i), []byte{}, false)
		f.Add(uint8(i), []byte{1, 3, 0x01}, true) // footer check type
		f.Add(uint8(i), []byte{2, 128, 0x55}, false)
	}
	f.Fuzz(func(t *testing.T, which uint8, edits []byte, fix bool) {
		raw := raws[int(which)%len(raws)]
		x := bytes.Clone(streams[int(which)%len(streams)])
		size := len(raw)
		for e := edits; len(e) >= 3; e = e[3:] {
			off := int(e[1])
			switch e[0] % 3 {
			case 1:
				off = len(x) - 1 - off
			case 2:
				off = off * len(x) / 256
			}
			if off >= 0 && off < len(x) {
				x[off] = e[2]
			}
		}
		// The reference decoder allocates the dictionary a block header
		// asks for: keep it under 32 MiB (code 26).
		if walkStream(x, fix) > 26 {
			return
		}
		ref, refErr := referenceDecode(x, int64(size))
		refOK := refErr == nil && len(ref) == size

		// The fast path's own verdict, hash aside.
		if blocks, err := splitBlocksGuarded(string(x), int64(size)); err == nil {
			buf := make([]byte, size)
			if err := decodeBlocks(context.Background(), blocks, buf); err == nil {
				if !refOK {
					t.Fatalf("the fast path accepts a stream the reference decoder rejects (%d bytes, error %v)", len(ref), refErr)
				}
				if !bytes.Equal(buf, ref) {
					t.Fatal("the fast path and the reference decoder disagree on the bytes")
				}
			}
		}

		// End to end: Decode with the fast path, and without. The
		// promised SHA-256 is the piece's: edits that change the bytes
		// fail both ways.
		src := Source{Name: "fuzz", XZ: string(x), Size: int64(size), SHA256: sha(raw)}
		got, err := Decode(src)
		var want []byte
		var wantErr error
		withReference(t, func() { want, wantErr = Decode(src) })
		if (err == nil) != (wantErr == nil) || !bytes.Equal(got, want) {
			t.Fatalf("Decode: %d bytes, %v; reference alone: %d bytes, %v", len(got), err, len(want), wantErr)
		}
		if err == nil && (!refOK || !bytes.Equal(got, raw)) {
			t.Fatalf("Decode accepted bytes the reference decoder does not give (%v)", refErr)
		}
	})
}

// FuzzSplitBlocks feeds splitBlocks any input: it returns an error or
// blocks that tile the promised size and lie inside the input, never
// panics.
func FuzzSplitBlocks(f *testing.F) {
	raws, streams := seedStreams(f)
	for i, s := range streams {
		f.Add(string(s), int64(len(raws[i])))
	}
	f.Add("\xfd7zXZ\x00", int64(0))
	f.Fuzz(func(t *testing.T, x string, size int64) {
		blocks, err := splitBlocks(x, size)
		if err != nil {
			return
		}
		var off int64
		for i, b := range blocks {
			if b.off != off || b.len < 0 || !strings.Contains(x, b.data) || int64(len(b.check)) != checkLen[b.checkType] || b.dictCap < lzma.MinDictCap {
				t.Fatalf("block %d: %+v (offset %d)", i, b, off)
			}
			off += b.len
		}
		if off != size || len(blocks) == 0 {
			t.Fatalf("%d blocks cover %d bytes, want %d", len(blocks), off, size)
		}
	})
}
