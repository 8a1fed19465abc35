package bzimage

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/pierrec/lz4/v4"
	"github.com/supermachine-go/supermachine-kernel/internal/extract"
	kernelamd64 "github.com/supermachine-go/supermachine-kernel/kernel-amd64"
)

// legacyFrame compresses data as "lz4 -l" does, with the kernel build's
// 4-byte length trailer.
func legacyFrame(t testing.TB, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := lz4.NewWriter(&buf)
	if err := w.Apply(lz4.LegacyOption(true)); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return binary.LittleEndian.AppendUint32(buf.Bytes(), uint32(len(data)))
}

// fakeBzImage wraps payload in a minimal bzImage: one setup sector after
// the boot sector, boot protocol 2.15, the payload 0x40 bytes into the
// protected-mode part.
func fakeBzImage(payload []byte) []byte {
	const start, off = 2 * 512, 0x40
	bz := make([]byte, start+off+len(payload)+16)
	bz[0x1f1] = 1
	copy(bz[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(bz[0x206:], 0x020f)
	binary.LittleEndian.PutUint32(bz[0x248:], off)
	binary.LittleEndian.PutUint32(bz[0x24c:], uint32(len(payload)))
	copy(bz[start+off:], payload)
	return bz
}

// sample is compressible data of n bytes.
func sample(n int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = "vmlinux\x00\x00\x00"[r.IntN(10)]
	}
	return b
}

func TestVmlinuxRoundTrip(t *testing.T) {
	// 0, one partial block, exactly one block, several blocks.
	for _, n := range []int{1, 1000, legacyBlockSize, 2*legacyBlockSize + 12345} {
		data := sample(n)
		bz := fakeBzImage(legacyFrame(t, data))
		size, err := DecodedSize(bz)
		if err != nil || size != int64(n) {
			t.Fatalf("n=%d: DecodedSize = %d, %v", n, size, err)
		}
		got, err := Vmlinux(bz, size)
		if err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("n=%d: decoded bytes differ", n)
		}
	}
}

func TestVmlinuxRejects(t *testing.T) {
	data := sample(3*legacyBlockSize/2 + 7)
	frame := legacyFrame(t, data)
	good := fakeBzImage(frame)
	n := int64(len(data))
	mutate := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	pstart := 2*512 + 0x40
	cases := []struct {
		name string
		bz   []byte
		size int64
		want string
	}{
		{"no header", make([]byte, 4096), n, "no HdrS"},
		{"old protocol", mutate(func(b []byte) []byte { b[0x206] = 0x06; return b }), n, "boot protocol 2.06"},
		{"payload outside", mutate(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[0x24c:], 1<<30); return b }), n, "outside"},
		{"not lz4", mutate(func(b []byte) []byte { b[pstart] = 0x1f; return b }), n, "not LZ4"},
		{"wrong size", good, n + 1, "trailer says"},
		{"too small", good, n - 1, "trailer says"},
		{"huge size", good, 1 << 40, "out of range"},
		{"corrupt block", mutate(func(b []byte) []byte {
			for i := pstart + 100; i < pstart+400; i++ {
				b[i] = 0xff
			}
			return b
		}), n, "block 1"},
		{"bad block length", mutate(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[pstart+4:], 0xfffffff0); return b }), n, "compressed length"},
		{"truncated", fakeBzImage(frame[:len(frame)/2]), n, "lz4"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Vmlinux(c.bz, c.size)
			if err == nil {
				t.Fatalf("decoded %d bytes, want an error containing %q", len(got), c.want)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q, want it to contain %q", err, c.want)
			}
		})
	}
	if _, err := Vmlinux(mutate(func(b []byte) []byte { b[pstart] = 0x1f; return b }), n); !errors.Is(err, ErrNotLZ4) {
		t.Fatalf("not-LZ4 error %v does not match ErrNotLZ4", err)
	}
}

// FuzzDecodeLegacy feeds mutated frames to the decoder: it must never
// panic, and must return either an error or exactly size bytes.
func FuzzDecodeLegacy(f *testing.F) {
	for _, n := range []int{0, 1, 100, 70000} {
		f.Add(legacyFrame(f, sample(n)), int64(n))
	}
	f.Add([]byte{0x02, 0x21, 0x4c, 0x18, 4, 0, 0, 0, 0x40, 'a', 'b', 'c', 'd'}, int64(4))
	f.Fuzz(func(t *testing.T, p []byte, size int64) {
		if size > 64<<20 {
			size %= 64 << 20 // keep allocations small; the bound is tested above
		}
		out, err := DecodeLegacy(p, size)
		if err == nil && int64(len(out)) != size {
			t.Fatalf("no error but %d bytes, want %d", len(out), size)
		}
	})
}

// FuzzPayload checks the header parser never panics and returns a slice
// inside the image.
func FuzzPayload(f *testing.F) {
	f.Add(fakeBzImage(legacyFrame(f, sample(100))))
	f.Fuzz(func(t *testing.T, bz []byte) {
		p, err := Payload(bz)
		if err == nil && len(p) > len(bz) {
			t.Fatalf("payload of %d bytes from a %d-byte image", len(p), len(bz))
		}
		if err == nil {
			if size, err := DecodedSize(bz); err == nil && size <= 1<<20 {
				Vmlinux(bz, size)
			}
		}
	})
}

// TestBundledKernel derives the vmlinux of the bundled amd64 kernel: an
// x86-64 ELF with the PVH entry note, of the length and SHA-256 the
// manifest records.
func TestBundledKernel(t *testing.T) {
	bz, err := extract.Decode(extract.Source{Name: "kernel", XZ: kernelamd64.KernelXZ(), Size: kernelamd64.KernelSize, SHA256: kernelamd64.KernelSHA256})
	if err != nil {
		t.Fatal(err)
	}
	size, err := DecodedSize(bz)
	if err != nil {
		t.Fatal(err)
	}
	if size != kernelamd64.VmlinuxSize {
		t.Fatalf("payload trailer says %d bytes, manifest %d", size, kernelamd64.VmlinuxSize)
	}
	vm, err := Vmlinux(bz, size)
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(vm); hex.EncodeToString(sum[:]) != kernelamd64.VmlinuxSHA256 {
		t.Fatalf("vmlinux SHA-256 %x, manifest %s", sum, kernelamd64.VmlinuxSHA256)
	}
	entry, err := PVHEntry(vm)
	if err != nil {
		t.Fatal(err)
	}
	if entry < 0x100000 || entry >= 1<<32-1 {
		t.Fatalf("PVH entry %#x is not a plausible physical address above 1 MiB", entry)
	}
	if _, err := PVHEntry(sample(4096)); err == nil {
		t.Fatal("PVHEntry accepted bytes that are not an ELF")
	}
}
