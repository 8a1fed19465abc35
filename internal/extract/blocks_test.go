package extract

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// multiBlock repacks src as an xz stream of blocks of blockSize bytes,
// with xz(1), or skips the test.
func multiBlock(t testing.TB, src Source, blockSize string) Source {
	t.Helper()
	_, packed := packPiece(t, src, int(src.Size), "--check=crc64", "-T1", "--block-size="+blockSize, "--lzma2=preset=6,dict=2MiB")
	src.XZ = string(packed)
	return src
}

func TestMultiBlock(t *testing.T) {
	src := multiBlock(t, busybox(), "256KiB")
	blocks, err := splitBlocks(src.XZ, src.Size)
	if err != nil || len(blocks) != int((src.Size+256<<10-1)/(256<<10)) {
		t.Fatalf("splitBlocks: %d blocks, %v", len(blocks), err)
	}
	b, err := Decode(src)
	if err != nil || sha(b) != src.SHA256 {
		t.Fatalf("Decode: %v", err)
	}
	// The sequential reader agrees.
	r, _ := NewReader(src)
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(r); err != nil || !bytes.Equal(buf.Bytes(), b) {
		t.Fatalf("NewReader: %v", err)
	}
	dest := filepath.Join(t.TempDir(), "busybox")
	if err := WriteFile(context.Background(), dest, src, testMode, false); err != nil {
		t.Fatal(err)
	}
	assertFile(t, dest, src, testMode)
	// One block is one block.
	if blocks, err := splitBlocks(busybox().XZ, busybox().Size); err != nil || len(blocks) != 1 {
		t.Errorf("single block: %d blocks, %v", len(blocks), err)
	}
}

func TestMultiBlockCorrupt(t *testing.T) {
	good := multiBlock(t, busybox(), "256KiB")
	for _, off := range []int{20, len(good.XZ) / 3, len(good.XZ) / 2, len(good.XZ) - 40, len(good.XZ) - 14} {
		src := corrupt(good, off)
		if _, err := Decode(src); !errors.Is(err, ErrChecksum) {
			t.Errorf("offset %d: Decode err = %v", off, err)
		}
		dir := t.TempDir()
		if err := WriteFile(context.Background(), filepath.Join(dir, "busybox"), src, testMode, false); !errors.Is(err, ErrChecksum) {
			t.Errorf("offset %d: WriteFile err = %v", off, err)
		}
		assertEmptyDir(t, dir)
	}
	// The wrong total size is not trusted from the index.
	src := good
	src.Size--
	if _, err := Decode(src); !errors.Is(err, ErrChecksum) {
		t.Errorf("wrong size: %v", err)
	}
}

// TestContainerChecks changes one field of the xz container at a time,
// with its CRC-32 made to match, and checks that the fast path refuses
// what the reference decoder refuses, for the reason the reference gives.
func TestContainerChecks(t *testing.T) {
	raws, streams := seedStreams(t)
	for i, good := range streams[:2] {
		size := int64(len(raws[i]))
		footer := len(good) - 12
		blockHeader := 12
		indexLen := (int(binary.LittleEndian.Uint32(good[footer+4:])) + 1) * 4
		for _, tc := range []struct {
			name   string
			change func(b []byte) []byte
			refErr string // what the reference decoder says
		}{
			{"footer check type", func(b []byte) []byte { b[footer+9] ^= 0x05; return b }, "footer flags incorrect"}, // CRC-64 <-> CRC-32
			{"footer reserved byte", func(b []byte) []byte { b[footer+8] = 0x01; return b }, "invalid flags"},
			{"header reserved flag bits", func(b []byte) []byte { b[7] |= 0x10; return b }, "invalid flags"},
			{"header reserved byte", func(b []byte) []byte { b[6] = 0x01; return b }, "invalid flags"},
			{"block header reserved flag bits", func(b []byte) []byte { b[blockHeader+1] |= 0x04; return b }, "reserved block header flags"},
			{"block header padding", func(b []byte) []byte {
				hlen := (int(b[blockHeader]) + 1) * 4
				b[blockHeader+hlen-5] = 0x01 // the last byte before the CRC-32
				return b
			}, "padding"},
			{"dictionary code out of range", func(b []byte) []byte { b[blockHeader+4] = 41; return b }, "dictionary size"},
			{"dictionary too small", func(b []byte) []byte { b[blockHeader+4] = 0; return b }, "distance out of range"},
			{"backward size", func(b []byte) []byte {
				binary.LittleEndian.PutUint32(b[footer+4:], uint32(indexLen/4))
				return b
			}, ""},
			{"stream padding after the footer", func(b []byte) []byte { return append(b, 0, 0, 0, 0) }, "unexpected data after stream"},
		} {
			t.Run(fmt.Sprintf("%d/%s", i, tc.name), func(t *testing.T) {
				b := tc.change(bytes.Clone(good))
				walkStream(b, true)
				if _, err := referenceDecode(b, size); err == nil || !strings.Contains(err.Error(), tc.refErr) {
					t.Fatalf("reference decoder: %v, want an error saying %q (is the change reached?)", err, tc.refErr)
				}
				src := Source{Name: "piece", XZ: string(b), Size: size, SHA256: sha(raws[i])}
				if raw, err := decodeFast(context.Background(), src); raw != nil || err != nil {
					t.Fatalf("fast path took it: %d bytes, %v", len(raw), err)
				}
				if _, err := Decode(src); !errors.Is(err, ErrChecksum) {
					t.Fatalf("Decode: %v", err)
				}
			})
		}
		// The unchanged stream, with its CRCs rewritten, is fine.
		b := bytes.Clone(good)
		walkStream(b, true)
		if !bytes.Equal(b, good) {
			t.Fatalf("stream %d: walkStream changed a correct stream", i)
		}
		src := Source{Name: "piece", XZ: string(b), Size: size, SHA256: sha(raws[i])}
		if raw, err := decodeFast(context.Background(), src); err != nil || !bytes.Equal(raw, raws[i]) {
			t.Fatalf("stream %d: fast path: %v", i, err)
		}
	}
}

// TestSplitBlocksPanic checks that a panic in splitBlocks (there is none
// known; this stands in for one) is an error, not a crash.
func TestSplitBlocksPanic(t *testing.T) {
	// A size that makes the index check read past the stream is
	// refused, not a panic, whatever the index says.
	for _, size := range []int64{-1, 0, 1 << 62} {
		if _, err := splitBlocksGuarded(busybox().XZ, size); !errors.Is(err, errNotFast) {
			t.Errorf("size %d: %v", size, err)
		}
	}
}
