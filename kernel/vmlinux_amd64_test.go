//go:build amd64

package kernel

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/supermachine-go/supermachine-kernel/internal/bzimage"
	"github.com/supermachine-go/supermachine-kernel/internal/extract"
	assets "github.com/supermachine-go/supermachine-kernel/kernel-amd64"
)

// TestVmlinux derives the ELF vmlinux from the bundled bzImage through
// every path (bytes, stream, file, cache) and checks what each gives: an
// x86-64 ELF with the PVH entry, of the manifest's length and SHA-256.
func TestVmlinux(t *testing.T) {
	b, err := Vmlinux.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) != assets.VmlinuxSize || Vmlinux.Len() != assets.VmlinuxSize {
		t.Fatalf("vmlinux is %d bytes, Len %d, manifest %d", len(b), Vmlinux.Len(), assets.VmlinuxSize)
	}
	if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != Vmlinux.SHA256() {
		t.Fatalf("vmlinux SHA-256 %x, want %s", sum, Vmlinux.SHA256())
	}
	if _, err := bzimage.PVHEntry(b); err != nil {
		t.Fatal(err)
	}
	// The bzImage's setup header is not in the ELF: the two differ.
	if k, _ := Kernel.Bytes(); bytes.Equal(k, b) {
		t.Fatal("vmlinux equals the bzImage")
	}

	dir := t.TempDir()
	dest := filepath.Join(dir, "vmlinux")
	if err := Vmlinux.ExtractTo(dest); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(dest); err != nil || !bytes.Equal(got, b) {
		t.Fatalf("extracted vmlinux differs from Bytes (%v)", err)
	}
	if fi, _ := os.Stat(dest); fi.Mode().Perm() != 0o644 {
		t.Fatalf("vmlinux mode %v, want 0644", fi.Mode().Perm())
	}
	r, err := Vmlinux.NewReader()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(r); err != nil || !bytes.Equal(buf.Bytes(), b) {
		t.Fatalf("NewReader: %v", err)
	}
	c := Cache{Dir: filepath.Join(dir, "cache")}
	p1, err := c.Path(context.Background(), Vmlinux)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(p1) != "vmlinux" || filepath.Base(filepath.Dir(p1)) != assets.VmlinuxSHA256 {
		t.Fatalf("cache path %s, want .../%s/vmlinux", p1, assets.VmlinuxSHA256)
	}
	p2, err := c.Path(context.Background(), Vmlinux)
	if err != nil || p2 != p1 {
		t.Fatalf("second Path = %s, %v; want %s", p2, err, p1)
	}
	m := Manifest()
	if m.Vmlinux == nil || m.Vmlinux.SHA256 != assets.VmlinuxSHA256 || m.Vmlinux.File != "vmlinux" {
		t.Fatalf("Manifest().Vmlinux = %+v", m.Vmlinux)
	}
}

// corruptVmlinux is Vmlinux derived from a bzImage whose LZ4 payload has
// a damaged block, or (sha) checked against another SHA-256.
func corruptVmlinux(t testing.TB, damage bool, sha string) *Asset {
	info := Vmlinux.Info()
	if sha != "" {
		info.SHA256 = sha
	}
	return &Asset{data: assetData{info: info, derive: func(int64) ([]byte, error) {
		bz, err := extract.Decode(coldSource(Kernel))
		if err != nil {
			return nil, err
		}
		if damage {
			p, err := bzimage.Payload(bz)
			if err != nil {
				t.Fatal(err)
			}
			for i := 1000; i < 3000; i++ {
				p[i] ^= 0x5a
			}
		}
		return bzimage.Vmlinux(bz, assets.VmlinuxSize)
	}}}
}

// TestVmlinuxCorrupt: a damaged payload and a SHA-256 mismatch both give
// an error matching ErrChecksum that names vmlinux, from every path, and
// leave no file behind.
func TestVmlinuxCorrupt(t *testing.T) {
	for name, a := range map[string]*Asset{
		"damaged payload": corruptVmlinux(t, true, ""),
		"sha mismatch":    corruptVmlinux(t, false, strings.Repeat("ab", 32)),
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			check := func(what string, err error) {
				t.Helper()
				var ce *ChecksumError
				if !errors.Is(err, ErrChecksum) || !errors.As(err, &ce) || ce.Name != "vmlinux" {
					t.Fatalf("%s: error %v, want a *ChecksumError for vmlinux", what, err)
				}
				if !strings.Contains(err.Error(), "vmlinux") {
					t.Fatalf("%s: error %q does not name vmlinux", what, err)
				}
			}
			check("ExtractTo", a.ExtractTo(filepath.Join(dir, "vmlinux")))
			_, err := Cache{Dir: filepath.Join(dir, "cache")}.Path(context.Background(), a)
			check("Cache.Path", err)
			_, err = a.Bytes()
			check("Bytes", err)
			var left []string
			filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
				if err == nil && !d.IsDir() {
					left = append(left, p)
				}
				return nil
			})
			if len(left) > 0 {
				t.Fatalf("files left behind: %q", left)
			}
		})
	}
}

// BenchmarkVmlinuxCold derives the vmlinux from the embedded blob and
// verifies it (xz decode of the bzImage, LZ4 decode of its payload,
// SHA-256 of 16 MB), and in the same iterations runs xz -dc of the kernel
// blob to /dev/null; it reports both and their ratio.
func BenchmarkVmlinuxCold(b *testing.B) {
	xzBin, err := exec.LookPath("xz")
	if err != nil {
		b.Skip("xz not installed")
	}
	blob := filepath.Join(b.TempDir(), "kernel.xz")
	if err := os.WriteFile(blob, []byte(assets.KernelXZ()), 0o644); err != nil {
		b.Fatal(err)
	}
	var derive, xz time.Duration
	for b.Loop() {
		t0 := time.Now()
		a := &Asset{data: assetData{info: Vmlinux.Info(), derive: func(int64) ([]byte, error) {
			bz, err := extract.Decode(coldSource(Kernel))
			if err != nil {
				return nil, err
			}
			return bzimage.Vmlinux(bz, assets.VmlinuxSize)
		}}}
		if _, err := a.Bytes(); err != nil {
			b.Fatal(err)
		}
		derive += time.Since(t0)
		t0 = time.Now()
		cmd := exec.Command(xzBin, "-dc", blob)
		if err := cmd.Run(); err != nil {
			b.Fatal(err)
		}
		xz += time.Since(t0)
	}
	n := float64(b.N)
	b.ReportMetric(float64(derive.Milliseconds())/n, "derive-ms")
	b.ReportMetric(float64(xz.Milliseconds())/n, "xz-dc-ms")
	b.ReportMetric(float64(derive)/float64(xz), "derive/xz")
}

// BenchmarkVmlinuxCachedWarm is Vmlinux.Cached once the file is in the
// cache: a stat and the stamp check, no decoding (goal: <= 1 ms).
func BenchmarkVmlinuxCachedWarm(b *testing.B) {
	c := Cache{Dir: b.TempDir()}
	ctx := context.Background()
	if _, err := c.Path(ctx, Vmlinux); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := c.Path(ctx, Vmlinux); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/op")
}
