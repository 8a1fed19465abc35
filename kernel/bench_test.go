package kernel

// Benchmarks of the speed and memory goals. Their figures go into the
// README; rerun them with
//
//	go test -run '^$' -bench . -benchtime 5x ./kernel/
//
// They are internal tests so that they can decode from the blobs even
// after another test or benchmark has called Bytes (which makes later
// extractions write the kept bytes instead of decoding).

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/supermachine-go/supermachine-kernel/internal/extract"
	"github.com/supermachine-go/supermachine-kernel/internal/reexec"
)

// coldSource is a's source without decoded bytes: extraction decodes.
func coldSource(a *Asset) extract.Source {
	src := a.source()
	src.Raw = nil
	return src
}

// coldExtractAll is ExtractAll, decoding from the blobs.
func coldExtractAll(ctx context.Context, dir string) (Paths, error) {
	return all(ctx, func(ctx context.Context, a *Asset) (string, error) {
		p := filepath.Join(dir, a.File())
		return p, extract.WriteFile(ctx, p, coldSource(a), a.Mode(), true)
	})
}

// BenchmarkColdExtractAll measures, in the same iterations on the same
// (possibly busy) machine:
//
//   - extract-ms: ExtractAll of the three assets into an empty directory,
//     decoding in parallel and including the fsyncs;
//   - extract-reference-ms: the same with the fast path off, decoding
//     with github.com/ulikunitz/xz alone;
//   - decode-ms: decoding the three in parallel to nowhere (no files);
//   - xz-par-ms: xz -dc of the three blobs to /dev/null, three processes
//     in parallel;
//   - xz-seq-ms: the same, one after the other;
//   - blocks-extract-ms: ExtractAll of the same assets repacked (here, by
//     xz(1)) as streams of 1 MiB blocks, which decode in parallel: what
//     packing with xz --block-size=1MiB in the pipeline would give.
//
// and reports extract/xz-par, extract/xz-seq and blocks/xz-seq: the goal
// is <= 1.0.
func BenchmarkColdExtractAll(b *testing.B) {
	xzBin, err := exec.LookPath("xz")
	if err != nil {
		b.Skip("skipping: no xz in PATH")
	}
	blobDir := b.TempDir()
	var blobs []string
	for _, a := range Assets() {
		p := filepath.Join(blobDir, a.File()+".xz")
		if err := os.WriteFile(p, []byte(a.data.xz()), 0o644); err != nil {
			b.Fatal(err)
		}
		blobs = append(blobs, p)
	}
	var blockSrcs []extract.Source
	var shippedLen, blocksLen int
	for _, a := range Assets() {
		src := coldSource(a)
		raw, err := extract.Decode(src)
		if err != nil {
			b.Fatal(err)
		}
		cmd := exec.Command(xzBin, "--format=xz", "--check=crc64", "-T1", "--block-size=1MiB", "--lzma2=preset=9e,dict=1MiB", "-c")
		cmd.Stdin = bytes.NewReader(raw)
		packed, err := cmd.Output()
		if err != nil {
			b.Fatal(err)
		}
		shippedLen += len(src.XZ)
		blocksLen += len(packed)
		src.XZ = string(packed)
		blockSrcs = append(blockSrcs, src)
	}
	xz := func(p string) {
		cmd := exec.Command(xzBin, "-dc", p)
		if err := cmd.Run(); err != nil { // Stdout nil: /dev/null
			b.Fatal(err)
		}
	}
	ctx := context.Background()
	var extractT, extractRefT, decodeT, xzPar, xzSeq, blocksT time.Duration
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		dir := filepath.Join(b.TempDir(), strconv.Itoa(i))
		t0 := time.Now()
		if _, err := coldExtractAll(ctx, dir); err != nil {
			b.Fatal(err)
		}
		extractT += time.Since(t0)

		// The same with the reference decoder alone: what the fast
		// path saves.
		was := extract.UseFastPath(false)
		t0 = time.Now()
		if _, err := coldExtractAll(ctx, dir+"-reference"); err != nil {
			b.Fatal(err)
		}
		extractRefT += time.Since(t0)
		extract.UseFastPath(was)

		t0 = time.Now()
		var wg sync.WaitGroup
		for i, src := range blockSrcs {
			a := Assets()[i]
			wg.Go(func() {
				if err := extract.WriteFile(ctx, filepath.Join(dir, "blocks", a.File()), src, a.Mode(), true); err != nil {
					b.Error(err)
				}
			})
		}
		wg.Wait()
		blocksT += time.Since(t0)

		t0 = time.Now()
		for _, a := range Assets() {
			wg.Go(func() {
				if _, err := extract.Decode(coldSource(a)); err != nil {
					b.Error(err)
				}
			})
		}
		wg.Wait()
		decodeT += time.Since(t0)

		t0 = time.Now()
		for _, p := range blobs {
			wg.Go(func() { xz(p) })
		}
		wg.Wait()
		xzPar += time.Since(t0)

		t0 = time.Now()
		for _, p := range blobs {
			xz(p)
		}
		xzSeq += time.Since(t0)
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(b.N) / 1e6 }
	b.ReportMetric(ms(extractT), "extract-ms")
	b.ReportMetric(ms(extractRefT), "extract-reference-ms")
	b.ReportMetric(ms(decodeT), "decode-ms")
	b.ReportMetric(ms(xzPar), "xz-par-ms")
	b.ReportMetric(ms(xzSeq), "xz-seq-ms")
	b.ReportMetric(float64(extractT)/float64(xzPar), "extract/xz-par")
	b.ReportMetric(float64(extractT)/float64(xzSeq), "extract/xz-seq")
	b.ReportMetric(ms(blocksT), "blocks-extract-ms")
	b.ReportMetric(float64(blocksT)/float64(xzSeq), "blocks/xz-seq")
	b.ReportMetric(float64(blocksT)/float64(xzPar), "blocks/xz-par")
	b.Logf("packed sizes of the three blobs: %d bytes as shipped, %d bytes in 1 MiB blocks (%+.1f%%)",
		shippedLen, blocksLen, 100*float64(blocksLen-shippedLen)/float64(shippedLen))
}

// BenchmarkColdExtractOne is the cold extraction of each asset alone.
func BenchmarkColdExtractOne(b *testing.B) {
	for _, a := range Assets() {
		b.Run(a.Name(), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(a.Len())
			for i := 0; b.Loop(); i++ {
				p := filepath.Join(b.TempDir(), a.File())
				if err := extract.WriteFile(context.Background(), p, coldSource(a), a.Mode(), false); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkWarmCacheAll is Cache.All when all three assets are cached and
// stamped: the warm path of every VMM start. The goal is <= 1 ms.
func BenchmarkWarmCacheAll(b *testing.B) {
	c := Cache{Dir: b.TempDir()}
	ctx := context.Background()
	if _, err := c.All(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.All(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWarmCacheAllVerify is the warm path with Cache.Verify set:
// every call hashes the three files in full.
func BenchmarkWarmCacheAllVerify(b *testing.B) {
	c := Cache{Dir: b.TempDir(), Verify: true}
	ctx := context.Background()
	if _, err := c.All(ctx); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := c.All(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkColdExtractAllPeakRSS runs a cold ExtractAll in a fresh helper
// process and reports the process's peak resident set size (VmHWM), next
// to that of a helper that does nothing (the test binary itself).
func BenchmarkColdExtractAllPeakRSS(b *testing.B) {
	rss := func(mode, arg string) float64 {
		cmd, err := reexec.Command(mode)
		if err != nil {
			b.Fatal(err)
		}
		cmd.Env = append(cmd.Env, "SUPERMACHINE_KERNEL_TEST_ARG="+arg)
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("%s: %v\n%s", mode, err, out)
		}
		// "VmHWM:     12345 kB"
		f := strings.Fields(string(out))
		if len(f) != 3 || f[0] != "VmHWM:" {
			b.Skipf("skipping: no VmHWM in /proc/self/status here (%q)", out)
		}
		kb, _ := strconv.ParseFloat(f[1], 64)
		return kb / 1024
	}
	var extractRSS, idleRSS float64
	for i := 0; b.Loop(); i++ {
		extractRSS += rss("extract-all", filepath.Join(b.TempDir(), strconv.Itoa(i)))
		idleRSS += rss("idle", "")
	}
	b.ReportMetric(extractRSS/float64(b.N), "peak-RSS-MiB")
	b.ReportMetric(idleRSS/float64(b.N), "idle-RSS-MiB")
}
