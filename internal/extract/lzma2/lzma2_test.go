package lzma2

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"strings"
	"testing"
)

// sample returns n bytes of text-like, compressible data with some
// incompressible stretches, deterministically.
func sample(n int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	words := strings.Fields("the quick brown fox jumps over the lazy dog kernel busybox agent vsock virtio mmio squashfs overlay")
	var b bytes.Buffer
	for b.Len() < n {
		if r.IntN(50) == 0 {
			for range r.IntN(4000) {
				b.WriteByte(byte(r.Uint32()))
			}
			continue
		}
		b.WriteString(words[r.IntN(len(words))])
		b.WriteByte(" \n\x00"[r.IntN(3)])
	}
	return b.Bytes()[:n]
}

// anyDict is a dictionary size no test stream exceeds.
const anyDict = 1 << 30

// compress packs raw as a raw LZMA2 chunk sequence with xz(1).
func compress(t testing.TB, raw []byte, opts string) string {
	t.Helper()
	xz, err := exec.LookPath("xz")
	if err != nil {
		t.Skip("skipping: no xz in PATH")
	}
	cmd := exec.Command(xz, "--format=raw", "--lzma2="+opts, "-c")
	cmd.Stdin = bytes.NewReader(raw)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("xz --lzma2=%s: %v", opts, err)
	}
	return string(out)
}

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		n    int
		opts string
	}{
		{0, "preset=6"},
		{1, "preset=6"},
		{100, "preset=0"},
		{3 << 20, "preset=6"},
		{3 << 20, "preset=9e,dict=4MiB"},
		{1 << 20, "preset=6,lc=0,lp=2,pb=0"},
		{1 << 20, "preset=6,lc=4,lp=0,pb=4"},
		{1 << 20, "preset=6,lc=1,lp=3,pb=1"},
		{1 << 20, "preset=1,mode=fast,nice=273"},
		{5 << 20, "preset=6,dict=4KiB"}, // short window: distances at the limit
	} {
		t.Run(fmt.Sprintf("%d/%s", tc.n, tc.opts), func(t *testing.T) {
			raw := sample(tc.n)
			in := compress(t, raw, tc.opts)
			out := make([]byte, len(raw))
			if err := Decode(out, in, anyDict); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out, raw) {
				t.Fatal("decoded bytes differ")
			}
			// A wrong output length is an error.
			if err := Decode(make([]byte, len(raw)+1), in, anyDict); err == nil {
				t.Error("no error for a too long output buffer")
			}
			if len(raw) > 0 {
				if err := Decode(make([]byte, len(raw)-1), in, anyDict); err == nil {
					t.Error("no error for a too short output buffer")
				}
			}
			// Anything after the end marker is an error.
			if err := Decode(out, in+"\x00", anyDict); err == nil {
				t.Error("no error for a byte after the end marker")
			}
		})
	}
}

func TestUncompressedChunks(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	raw := make([]byte, 3<<20)
	for i := range raw {
		raw[i] = byte(r.Uint32())
	}
	copy(raw[1<<20:], sample(1<<20)) // compressed chunks between stored ones
	in := compress(t, raw, "preset=6")
	out := make([]byte, len(raw))
	if err := Decode(out, in, anyDict); err != nil || !bytes.Equal(out, raw) {
		t.Fatalf("err %v, equal %v", err, bytes.Equal(out, raw))
	}
}

// TestCorrupt checks that truncated input is an error, and that damaged
// input is an error or, rarely, decodes to other bytes (which the
// caller's SHA-256 catches), never the original bytes by luck of a
// missing check: every byte of a chunk matters.
func TestCorrupt(t *testing.T) {
	raw := sample(256 << 10)
	in := compress(t, raw, "preset=6")
	out := make([]byte, len(raw))
	for n := 0; n < len(in); n += 1 + n/8 {
		if err := Decode(out, in[:n], anyDict); err == nil {
			t.Fatalf("no error for %d of %d bytes", n, len(in))
		}
	}
	r := rand.New(rand.NewPCG(5, 6))
	var errs int
	for i := range 500 {
		b := []byte(in)
		off := r.IntN(len(b))
		b[off] ^= byte(1 + r.IntN(255))
		clear(out)
		err := Decode(out, string(b), anyDict)
		if err == nil && bytes.Equal(out, raw) {
			t.Fatalf("case %d: byte %d of %d changed, yet the original decoded without error", i, off, len(b))
		}
		if err != nil {
			errs++
		}
	}
	// Most damage is caught by the decoder itself (the end-of-chunk
	// checks), not left to the caller's hash.
	if errs < 450 {
		t.Errorf("only %d of 500 damaged streams gave an error", errs)
	}
}

// TestDictCap checks that no match reaches further back than the
// dictionary size: a stream packed with a 1 MiB dictionary decodes with
// dictCap 1 MiB, not with 4 KiB; one packed with 4 KiB decodes with 4 KiB.
func TestDictCap(t *testing.T) {
	raw := sample(2 << 20)
	out := make([]byte, len(raw))
	big := compress(t, raw, "preset=6,dict=1MiB")
	if err := Decode(out, big, 1<<20); err != nil || !bytes.Equal(out, raw) {
		t.Fatalf("dict 1 MiB: %v", err)
	}
	if err := Decode(out, big, 4096); err == nil {
		t.Fatal("dict 1 MiB stream decoded with a 4 KiB dictionary")
	}
	small := compress(t, raw, "preset=6,dict=4KiB")
	if err := Decode(out, small, 4096); err != nil || !bytes.Equal(out, raw) {
		t.Fatalf("dict 4 KiB: %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(compress(f, sample(5000), "preset=6")), uint16(5000))
	f.Add([]byte("\x01\x00\x02abc\x00"), uint16(3))
	f.Add([]byte{0}, uint16(0))
	f.Fuzz(func(t *testing.T, in []byte, n uint16) {
		// Any input: an error or not, never a panic or a hang.
		Decode(make([]byte, n), string(in), anyDict)
	})
}

func BenchmarkDecode(b *testing.B) {
	raw := sample(8 << 20)
	in := compress(b, raw, "preset=9e,dict=8MiB")
	out := make([]byte, len(raw))
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if err := Decode(out, in, anyDict); err != nil {
			b.Fatal(err)
		}
	}
}
