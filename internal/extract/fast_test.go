package extract

import (
	"context"
	"errors"
	"testing"

	kernelamd64 "github.com/supermachine-go/supermachine-kernel/kernel-amd64"
	kernelarm64 "github.com/supermachine-go/supermachine-kernel/kernel-arm64"
)

// realBlobs are the shipped blobs of both arches.
func realBlobs() []Source {
	return []Source{
		busybox(), busyboxArm64(),
		{Name: "kernel", XZ: kernelamd64.KernelXZ(), Size: kernelamd64.KernelSize, SHA256: kernelamd64.KernelSHA256},
		{Name: "kernel", XZ: kernelarm64.KernelXZ(), Size: kernelarm64.KernelSize, SHA256: kernelarm64.KernelSHA256},
		{Name: "agent", XZ: kernelamd64.AgentXZ(), Size: kernelamd64.AgentSize, SHA256: kernelamd64.AgentSHA256},
		{Name: "agent", XZ: kernelarm64.AgentXZ(), Size: kernelarm64.AgentSize, SHA256: kernelarm64.AgentSHA256},
	}
}

// TestFastPath checks that the fast path takes every shipped blob and
// agrees with the reference decoder (both are checked against the
// manifest's SHA-256).
func TestFastPath(t *testing.T) {
	for _, src := range realBlobs() {
		raw, err := decodeFast(context.Background(), src)
		if err != nil || raw == nil {
			t.Fatalf("%s (%d bytes): fast path not taken: %v", src.Name, src.Size, err)
		}
		withReference(t, func() {
			ref, err := Decode(src)
			if err != nil || sha(ref) != sha(raw) {
				t.Fatalf("%s: reference decoder: %v", src.Name, err)
			}
		})
	}
}

// TestFallback checks that everything works with the fast path off: the
// reference decoder alone.
func TestFallback(t *testing.T) {
	src := busybox()
	withReference(t, func() {
		if _, err := Decode(src); err != nil {
			t.Fatal(err)
		}
		if _, err := Decode(corrupt(src, len(src.XZ)/2)); !errors.Is(err, ErrChecksum) {
			t.Fatalf("reference, corrupt: %v", err)
		}
	})
}

// withReference runs f with the fast path off.
func withReference(t testing.TB, f func()) {
	was := UseFastPath(false)
	defer UseFastPath(was)
	f()
}

// BenchmarkDecode compares the fast path with the reference decoder
// (github.com/ulikunitz/xz) on each shipped blob, one goroutine each.
func BenchmarkDecode(b *testing.B) {
	for _, src := range realBlobs() {
		for _, fast := range []bool{true, false} {
			name := src.Name + "-" + src.SHA256[:6] + "-" + map[bool]string{true: "fast", false: "reference"}[fast]
			b.Run(name, func(b *testing.B) {
				fastPath = fast
				defer func() { fastPath = true }()
				b.SetBytes(src.Size)
				b.ReportAllocs()
				for b.Loop() {
					if _, err := Decode(src); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
