package main

import (
	"bytes"
	"math/rand/v2"
	"os/exec"
	"testing"

	"github.com/supermachine-go/supermachine-kernel/internal/bzimage"
)

// Streams of every awkward length decode to their input with the
// project's LZ4 legacy-frame decoder (the one that derives vmlinux), and
// with the lz4 command where it is installed.
func TestStoredStreamDecodes(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, 2*blockSize+300)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	lz4, _ := exec.LookPath("lz4")
	for _, n := range []int{0, 1, 14, 15, 16, 269, 270, 271, 524, blockSize - 1, blockSize, blockSize + 1, len(data)} {
		in := data[:n]
		var out bytes.Buffer
		if err := writeStored(&out, bytes.NewReader(in)); err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		got, err := bzimage.DecodeLegacy(out.Bytes(), int64(n))
		if err != nil {
			t.Fatalf("%d bytes: DecodeLegacy: %v", n, err)
		}
		if !bytes.Equal(got, in) {
			t.Fatalf("%d bytes: DecodeLegacy gives other bytes", n)
		}
		if lz4 != "" {
			cmd := exec.Command(lz4, "-dc")
			cmd.Stdin = bytes.NewReader(out.Bytes())
			dec, err := cmd.Output()
			if err != nil {
				t.Fatalf("%d bytes: lz4 -dc: %v", n, err)
			}
			if !bytes.Equal(dec, in) {
				t.Fatalf("%d bytes: lz4 -dc gives %d other bytes", n, len(dec))
			}
		}
	}
}

// The stream stays within LZ4_compressBound for every block, which the
// kernel's and the project's decoders check.
func TestStoredBlockWithinBound(t *testing.T) {
	const bound = blockSize + blockSize/255 + 16
	if got := len(literalHeader(blockSize)) + blockSize; got > bound {
		t.Fatalf("a full block is %d bytes, LZ4_compressBound(8 MiB) is %d", got, bound)
	}
}

func TestCheckArgs(t *testing.T) {
	if err := checkArgs([]string{"-l", "-9", "-", "-"}); err != nil {
		t.Errorf("the kernel build's arguments: %v", err)
	}
	for _, bad := range [][]string{{"-9", "-", "-"}, {"-l", "-d", "-", "-"}, {"-l", "in", "out"}} {
		if err := checkArgs(bad); err == nil {
			t.Errorf("checkArgs(%q) accepted", bad)
		}
	}
}
