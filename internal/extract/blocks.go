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
	"io"
	"runtime"
	"strings"
	"sync"

	"github.com/supermachine-go/supermachine-kernel/internal/extract/lzma2"
	"github.com/ulikunitz/xz/lzma"
)

// The fast path. An xz stream holds one or more blocks, each compressed
// on its own with a fresh dictionary. When the decoded length is known (it
// always is here), each block decodes straight into its place in one
// output buffer with package lzma2, which is several times faster than a
// streaming decoder; several blocks (xz --block-size) decode in parallel.
// The result is verified against the SHA-256 like everything else, and on
// any failure the stream is decoded again with github.com/ulikunitz/xz,
// the reference decoder, whose verdict stands: the fast path can make a
// decode faster, never wrong and never a false error. The fast path
// accepts no stream the reference decoder rejects: splitBlocks makes every
// check of the container the reference makes, and package lzma2 every
// check of the chunks (it may refuse more, and then the reference
// decides). FuzzDifferential holds the two to this on mutated real blobs.

// fastPath enables decodeFast; tests and benchmarks turn it off to
// measure or exercise the reference decoder alone.
var fastPath = true

// UseFastPath turns the fast path on or off for the whole process and
// returns the previous setting. It exists for benchmarks that compare the
// two decoders (kernel's BenchmarkColdExtractAll); nothing else changes it.
// It must not be called while anything decodes.
func UseFastPath(on bool) (was bool) {
	was, fastPath = fastPath, on
	return was
}

// decodeFast decodes and verifies src on the fast path. It returns the
// bytes, or ctx's error, or (nil, nil) if the caller must use the
// reference decoder: fast path off, Raw set, a stream it does not take,
// or any failure.
func decodeFast(ctx context.Context, src Source) ([]byte, error) {
	if !fastPath || src.Raw != nil {
		return nil, nil
	}
	blocks, err := splitBlocksGuarded(src.XZ, src.Size)
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

// splitBlocksGuarded is splitBlocks with a panic (a bug: it checks its
// input) turned into errNotFast, so that the reference decoder gets its
// turn.
func splitBlocksGuarded(xz string, size int64) (blocks []block, err error) {
	defer func() {
		if r := recover(); r != nil {
			blocks, err = nil, fmt.Errorf("%w: splitBlocks: %v", errNotFast, r)
		}
	}()
	return splitBlocks(xz, size)
}

// block is one block of an xz stream, located through the stream's index.
type block struct {
	data      string // the block's LZMA2 chunks (header, padding and check removed)
	check     string // the block's check of the decoded data
	checkType byte   // 0x00 none, 0x01 CRC-32, 0x04 CRC-64, 0x0a SHA-256
	dictCap   int    // the dictionary size the reference decoder uses for it
	off, len  int64  // where the block's bytes go in the decoded asset
}

var errNotFast = errors.New("not a stream for the fast path")

// checkLen is the length of each check type the xz format defines.
var checkLen = map[byte]int64{0x00: 0, 0x01: 4, 0x04: 8, 0x0a: 32}

// splitBlocks returns the blocks of the single xz stream xz, which must
// decode to size bytes in all. It fails (errNotFast) for anything but a
// well-formed single stream of plain LZMA2 blocks, checked as
// github.com/ulikunitz/xz checks it (with ReaderConfig.SingleStream):
// header and footer magic, CRC-32s of the header, footer, block headers
// and index; reserved bits and bytes zero in the stream flags, block
// flags, block header padding, block padding and index padding; footer
// flags equal to the header's; the backward size equal to the index's
// length; sizes in block headers, when present, equal to the block's;
// and nothing after the footer. It may refuse more (more than 65536
// blocks, a stream with none, filters other than LZMA2 alone): callers
// then decode with the reference decoder, which reports what is wrong.
func splitBlocks(xz string, size int64) ([]block, error) {
	const headerLen, footerLen = 12, 12
	if len(xz) < headerLen+footerLen || !strings.HasPrefix(xz, "\xfd7zXZ\x00") || !strings.HasSuffix(xz, "YZ") {
		return nil, errNotFast
	}
	// Stream flags: a zero byte, then the check type, nothing else.
	flags := xz[7]
	check, ok := checkLen[flags]
	if !ok || xz[6] != 0 || !crcOK(xz[6:8], xz[8:12]) {
		return nil, errNotFast
	}
	footer := xz[len(xz)-footerLen:]
	if !crcOK(footer[4:10], footer[:4]) || footer[8] != 0 || footer[9] != flags {
		return nil, errNotFast
	}
	indexLen := (int64(binary.LittleEndian.Uint32([]byte(footer[4:8]))) + 1) * 4
	indexOff := int64(len(xz)) - footerLen - indexLen
	if indexOff < headerLen {
		return nil, errNotFast
	}
	records, err := parseIndex(xz[indexOff : len(xz)-footerLen])
	if err != nil {
		return nil, err
	}
	blocks := make([]block, 0, len(records))
	pos, out := int64(headerLen), int64(0)
	for _, rec := range records {
		if rec.uncompressed > uint64(size-out) || pos >= indexOff {
			return nil, errNotFast
		}
		// Block: header, compressed data, padding to a multiple of
		// four, check. The unpadded size leaves out the padding.
		hlen := (int64(xz[pos]) + 1) * 4
		if rec.unpadded > uint64(indexOff-pos) || int64(rec.unpadded) < hlen+check || xz[pos] == 0 {
			return nil, errNotFast
		}
		dataEnd := pos + int64(rec.unpadded) - check
		checkOff := (dataEnd + 3) &^ 3
		if checkOff+check > indexOff || !zeros(xz[dataEnd:checkOff]) ||
			!crcOK(xz[pos:pos+hlen-4], xz[pos+hlen-4:pos+hlen]) {
			return nil, errNotFast
		}
		dictCap, ok := lzma2Header(xz[pos:pos+hlen-4], dataEnd-pos-hlen, int64(rec.uncompressed))
		if !ok {
			return nil, errNotFast
		}
		blocks = append(blocks, block{
			data: xz[pos+hlen : dataEnd], check: xz[checkOff : checkOff+check], checkType: flags,
			dictCap: dictCap, off: out, len: int64(rec.uncompressed),
		})
		out += int64(rec.uncompressed)
		pos = checkOff + check
	}
	if pos != indexOff || out != size {
		return nil, errNotFast
	}
	return blocks, nil
}

// record is one record of an xz index.
type record struct{ unpadded, uncompressed uint64 }

// parseIndex parses the xz index index (indicator to CRC-32), which must
// be exactly as long as its records and padding.
func parseIndex(index string) ([]record, error) {
	if len(index) < 8 || !crcOK(index[:len(index)-4], index[len(index)-4:]) {
		return nil, errNotFast
	}
	r := strings.NewReader(index[:len(index)-4])
	if ind, err := r.ReadByte(); err != nil || ind != 0 {
		return nil, errNotFast
	}
	n, err := binary.ReadUvarint(r)
	if err != nil || n < 1 || n > 1<<16 {
		return nil, errNotFast
	}
	records := make([]record, n)
	for i := range records {
		u, err1 := binary.ReadUvarint(r)
		c, err2 := binary.ReadUvarint(r)
		if err1 != nil || err2 != nil || u >= 1<<63 || c >= 1<<63 {
			return nil, errNotFast
		}
		records[i] = record{u, c}
	}
	// Then padding to a multiple of four, zero bytes only, and the
	// CRC-32: nothing more.
	rest := index[len(index)-4-r.Len() : len(index)-4]
	if consumed := len(index) - 4 - len(rest); len(rest) != (4-consumed%4)%4 || !zeros(rest) {
		return nil, errNotFast
	}
	return records, nil
}

// crcOK reports whether sum is the little-endian CRC-32 of data.
func crcOK(data, sum string) bool {
	return crc32.ChecksumIEEE([]byte(data)) == binary.LittleEndian.Uint32([]byte(sum))
}

// zeros reports whether s holds zero bytes only.
func zeros(s string) bool { return strings.Trim(s, "\x00") == "" }

// lzma2Header checks the block header h (without its CRC-32) of a block
// with packed bytes of compressed data decoding to unpacked bytes: one
// filter, LZMA2, with a valid dictionary size; no reserved flag bits; the
// sizes, where present, equal to the block's; zero padding. It returns
// the dictionary capacity the reference decoder gives the block: the
// header's, at least lzma.MinDictCap.
func lzma2Header(h string, packed, unpacked int64) (dictCap int, ok bool) {
	if len(h) < 2 || h[1]&0x3f != 0 { // one filter, no reserved bits
		return 0, false
	}
	r := strings.NewReader(h[2:])
	for _, s := range []struct {
		present bool
		want    int64
	}{{h[1]&0x40 != 0, packed}, {h[1]&0x80 != 0, unpacked}} {
		if s.present {
			if v, err := binary.ReadUvarint(r); err != nil || v != uint64(s.want) {
				return 0, false
			}
		}
	}
	id, err := binary.ReadUvarint(r)
	if err != nil || id != 0x21 {
		return 0, false
	}
	var props [2]byte // properties length (1), dictionary size code
	if _, err := io.ReadFull(r, props[:]); err != nil || props[0] != 1 || props[1] > 40 {
		return 0, false
	}
	rest := h[len(h)-r.Len():]
	if !zeros(rest) {
		return 0, false
	}
	c := props[1]
	dict := uint64(1<<32 - 1) // code 40
	if c < 40 {
		dict = uint64(2|c&1) << (c/2 + 11)
	}
	return int(max(dict, lzma.MinDictCap)), true
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
	if err := lzma2.Decode(dst, b.data, b.dictCap); err != nil {
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
