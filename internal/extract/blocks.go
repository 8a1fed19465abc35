package extract

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/crc64"
	"runtime"
	"strings"
	"sync"

	"github.com/supermachine-go/supermachine-kernel/internal/extract/lzma2"
)

// The fast path. An xz stream holds one or more blocks, each compressed
// on its own with a fresh dictionary. When the decoded length is known (it
// always is here), each block decodes straight into its place in one
// output buffer with package lzma2, which is several times faster than a
// streaming decoder; several blocks (xz --block-size) decode in parallel.
// The result is verified against the SHA-256 like everything else, and on
// any failure the stream is decoded again with github.com/ulikunitz/xz,
// the reference decoder, whose verdict stands: the fast path can make a
// decode faster, never wrong and never a false error. Both decoders
// accept exactly the same streams: the fast path checks every CRC the
// format has, as the reference decoder does.

// fastPath enables decodeFast; tests and benchmarks turn it off to
// measure or exercise the reference decoder alone.
var fastPath = true

// decodeFast decodes and verifies src on the fast path. It returns the
// bytes, or ctx's error, or (nil, nil) if the caller must use the
// reference decoder: fast path off, Raw set, a stream it does not take,
// or any failure.
func decodeFast(ctx context.Context, src Source) ([]byte, error) {
	if !fastPath || src.Raw != nil {
		return nil, nil
	}
	blocks, err := splitBlocks(src.XZ, src.Size)
	if err != nil {
		return nil, nil
	}
	raw, err := decodeParallel(ctx, src, blocks)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, nil
	}
	return raw, nil
}

// block is one block of an xz stream, located through the stream's index.
type block struct {
	data      string // the block's LZMA2 chunks (header, padding and check removed)
	check     string // the block's check of the decoded data
	checkType byte   // 0x00 none, 0x01 CRC-32, 0x04 CRC-64, 0x0a SHA-256
	off, len  int64  // where the block's bytes go in the decoded asset
}

var errNotFast = errors.New("not a stream for the fast path")

// splitBlocks returns the blocks of the single xz stream xz, which must
// decode to size bytes in all. It fails (errNotFast) for anything but a
// well-formed single stream of plain LZMA2 blocks whose headers, index and
// footer pass their CRC-32 checks; callers then decode with the reference
// decoder, which reports what is wrong.
func splitBlocks(xz string, size int64) ([]block, error) {
	const headerLen, footerLen = 12, 12
	if len(xz) < headerLen+footerLen || !strings.HasPrefix(xz, "\xfd7zXZ\x00") || !strings.HasSuffix(xz, "YZ") {
		return nil, errNotFast
	}
	checkLen := map[byte]int64{0x00: 0, 0x01: 4, 0x04: 8, 0x0a: 32}
	check, ok := checkLen[xz[7]&0x0f]
	if !ok || xz[6] != 0 {
		return nil, errNotFast
	}
	footer := xz[len(xz)-footerLen:]
	if !crcOK(xz[6:8], xz[8:12]) || !crcOK(footer[4:10], footer[:4]) {
		return nil, errNotFast
	}
	indexLen := (int64(binary.LittleEndian.Uint32([]byte(footer[4:8]))) + 1) * 4
	indexOff := int64(len(xz)) - footerLen - indexLen
	if indexOff < headerLen {
		return nil, errNotFast
	}
	index := xz[indexOff : len(xz)-footerLen]
	if !crcOK(index[:len(index)-4], index[len(index)-4:]) {
		return nil, errNotFast
	}
	r := strings.NewReader(index)
	if ind, err := r.ReadByte(); err != nil || ind != 0 {
		return nil, errNotFast
	}
	n, err := binary.ReadUvarint(r)
	if err != nil || n < 1 || n > 1<<16 {
		return nil, errNotFast
	}
	blocks := make([]block, 0, n)
	pos, out := int64(headerLen), int64(0)
	for range n {
		unpadded, err1 := binary.ReadUvarint(r)
		uncompressed, err2 := binary.ReadUvarint(r)
		if err1 != nil || err2 != nil || unpadded > uint64(indexOff) || uncompressed > uint64(size-out) {
			return nil, errNotFast
		}
		// Block: header, compressed data, padding to a multiple of
		// four, check. The unpadded size leaves out the padding.
		hlen := (int64(xz[pos]) + 1) * 4
		dataEnd := pos + int64(unpadded) - check
		checkOff := (dataEnd + 3) &^ 3
		if dataEnd < pos+hlen || checkOff+check > indexOff ||
			strings.Trim(xz[dataEnd:checkOff], "\x00") != "" ||
			!crcOK(xz[pos:pos+hlen-4], xz[pos+hlen-4:pos+hlen]) ||
			!lzma2Only(xz[pos:pos+hlen-4]) {
			return nil, errNotFast
		}
		blocks = append(blocks, block{
			data: xz[pos+hlen : dataEnd], check: xz[checkOff : checkOff+check], checkType: xz[7] & 0x0f,
			off: out, len: int64(uncompressed),
		})
		out += int64(uncompressed)
		pos = checkOff + check
	}
	if pos != indexOff || out != size {
		return nil, errNotFast
	}
	return blocks, nil
}

// crcOK reports whether sum is the little-endian CRC-32 of data.
func crcOK(data, sum string) bool {
	return crc32.ChecksumIEEE([]byte(data)) == binary.LittleEndian.Uint32([]byte(sum))
}

// lzma2Only reports whether the block header h (without its CRC-32)
// declares one filter, LZMA2.
func lzma2Only(h string) bool {
	if len(h) < 2 || h[1]&0x3f != 0 { // one filter, no reserved bits
		return false
	}
	r := strings.NewReader(h[2:])
	for _, present := range []bool{h[1]&0x40 != 0, h[1]&0x80 != 0} { // sizes
		if present {
			if _, err := binary.ReadUvarint(r); err != nil {
				return false
			}
		}
	}
	id, err1 := binary.ReadUvarint(r)
	propLen, err2 := binary.ReadUvarint(r)
	return err1 == nil && err2 == nil && id == 0x21 && propLen == 1
}

// decodeParallel decodes the blocks of src, on up to GOMAXPROCS goroutines
// if there are several, and verifies the result.
func decodeParallel(ctx context.Context, src Source, blocks []block) ([]byte, error) {
	buf := make([]byte, src.Size)
	if err := decodeBlocks(ctx, blocks, buf); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &ChecksumError{Name: src.Name, WantSHA256: src.SHA256, WantSize: src.Size, Err: err}
	}
	sum := sha256.Sum256(buf)
	if got := hex.EncodeToString(sum[:]); got != src.SHA256 {
		return nil, &ChecksumError{Name: src.Name, WantSHA256: src.SHA256, GotSHA256: got, WantSize: src.Size, GotSize: src.Size}
	}
	return buf, nil
}

// decodeBlocks decodes blocks into buf (the whole asset) on up to
// GOMAXPROCS goroutines. It does not verify: the caller hashes buf.
func decodeBlocks(ctx context.Context, blocks []block, buf []byte) error {
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	for _, b := range blocks {
		sem <- struct{}{}
		if err := ctx.Err(); err != nil {
			<-sem
			mu.Lock()
			first = cmp.Or(first, err)
			mu.Unlock()
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := decodeBlock(b, buf[b.off:b.off+b.len]); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return first
}

// decodeBlock decodes one block into dst, which must be exactly its size.
// A panic in the decoder (a bug: it checks its input) is an error, so
// that the reference decoder gets its turn.
func decodeBlock(b block, dst []byte) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("lzma2: %v", r)
		}
	}()
	if err := lzma2.Decode(dst, b.data); err != nil {
		return err
	}
	var sum []byte
	switch b.checkType {
	case 0x00:
	case 0x01:
		sum = binary.LittleEndian.AppendUint32(nil, crc32.ChecksumIEEE(dst))
	case 0x04:
		sum = binary.LittleEndian.AppendUint64(nil, crc64.Checksum(dst, crc64Table))
	case 0x0a:
		s := sha256.Sum256(dst)
		sum = s[:]
	}
	if string(sum) != b.check {
		return errors.New("xz: block check mismatch")
	}
	return nil
}

var crc64Table = crc64.MakeTable(crc64.ECMA)
