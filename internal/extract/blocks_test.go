package extract

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// multiBlock repacks src as an xz stream of blocks of blockSize bytes,
// with xz(1), or skips the test.
func multiBlock(t testing.TB, src Source, blockSize string) Source {
	t.Helper()
	xzBin, err := exec.LookPath("xz")
	if err != nil {
		t.Skip("skipping: no xz in PATH to make a multi-block stream")
	}
	raw, err := Decode(src)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(xzBin, "--format=xz", "--check=crc64", "-T1", "--block-size="+blockSize, "--lzma2=preset=6,dict=2MiB", "-c")
	cmd.Stdin = bytes.NewReader(raw)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	src.XZ = string(out)
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
	if err := WriteFile(context.Background(), dest, src, false); err != nil {
		t.Fatal(err)
	}
	assertFile(t, dest, src)
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
		if err := WriteFile(context.Background(), filepath.Join(dir, "busybox"), src, false); !errors.Is(err, ErrChecksum) {
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
	os.Getpid()
}
