package oci_test

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/supermachine-go/supermachine-kernel/internal/oci"
	"github.com/supermachine-go/supermachine-kernel/internal/oci/ocitest"
)

// benchDirs are the host trees the conversion benchmark makes its
// layers of, one layer each (about 30 MB of gzip on Debian 12 with Go
// in /usr/local/go):
// $SUPERMACHINE_BENCH_IMAGE_DIRS (colon-separated) overrides them.
var benchDirs = []string{"/usr/lib/python3.11", "/usr/share/perl", "/usr/local/go/src/net", "/usr/local/go/src/crypto"}

// dirLayer tars the tree at dir (as the path it has on the host) into a
// gzip layer file in out.
func dirLayer(b *testing.B, dir, out string) (v1.Layer, string) {
	b.Helper()
	raw := filepath.Join(out, strings.ReplaceAll(strings.Trim(dir, "/"), "/", "_")+".tar")
	f, err := os.Create(raw)
	if err != nil {
		b.Fatal(err)
	}
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		} else if !fi.Mode().IsRegular() && !fi.IsDir() {
			return nil
		}
		h, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		h.Name = strings.TrimPrefix(p, "/")
		if fi.IsDir() {
			h.Name += "/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			src, err := os.Open(p)
			if err != nil {
				return err
			}
			defer src.Close()
			_, err = io.Copy(tw, src)
			return err
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	tw.Close()
	f.Close()
	l, err := tarball.LayerFromFile(raw, tarball.WithCompressedCaching)
	if err != nil {
		b.Fatal(err)
	}
	return l, raw
}

// BenchmarkConvert converts a three-layer image of about 30 MB (gzip)
// from an OCI layout into a root image, and in the same iteration does
// what a user would by hand: tar -x of the same layers, then mksquashfs
// of the tree with the same compression (lz4). It reports the medians of both
// (convert-ms, tar-mksquashfs-ms) and their ratio.
//
//	go test -run '^$' -bench Convert -benchtime 5x ./internal/oci/
func BenchmarkConvert(b *testing.B) {
	needSqfstar(b)
	if os.Geteuid() != 0 {
		b.Skip("tar -x keeps the layers' owners only as root")
	}
	dirs := benchDirs
	if s := os.Getenv("SUPERMACHINE_BENCH_IMAGE_DIRS"); s != "" {
		dirs = strings.Split(s, ":")
	}
	work := b.TempDir()
	var layers []v1.Layer
	var gzs []string
	var compressed int64
	for _, d := range dirs {
		if _, err := os.Stat(d); err != nil {
			b.Skipf("no %s here (set SUPERMACHINE_BENCH_IMAGE_DIRS)", d)
		}
		l, _ := dirLayer(b, d, work)
		layers = append(layers, l)
		size, _ := l.Size()
		compressed += size
		digest, _ := l.Digest()
		gz := filepath.Join(work, digest.Hex+".tar.gz")
		rc, _ := l.Compressed()
		out, _ := os.Create(gz)
		io.Copy(out, rc)
		rc.Close()
		out.Close()
		gzs = append(gzs, gz)
	}
	img, err := ocitest.Image("amd64", v1.Config{}, layers...)
	if err != nil {
		b.Fatal(err)
	}
	layoutDir := filepath.Join(work, "layout")
	if err := ocitest.WriteLayout(layoutDir, img); err != nil {
		b.Fatal(err)
	}
	b.Logf("image: %d layers, %.1f MB compressed", len(layers), float64(compressed)/1e6)
	var conv, manual []time.Duration
	var rootSize, manualSize int64
	for i := 0; b.Loop(); i++ {
		cache := filepath.Join(work, fmt.Sprint("cache", i))
		start := time.Now()
		im, err := oci.Prepare(context.Background(), layoutDir, oci.Options{Arch: "amd64", Dir: cache})
		if err != nil {
			b.Fatal(err)
		}
		conv = append(conv, time.Since(start))
		fi, _ := os.Stat(im.Root)
		rootSize = fi.Size()
		os.RemoveAll(cache)

		tree := filepath.Join(work, fmt.Sprint("tree", i))
		os.Mkdir(tree, 0o755)
		out := tree + ".squashfs"
		start = time.Now()
		for _, gz := range gzs {
			if o, err := exec.Command("tar", "-xzf", gz, "-C", tree).CombinedOutput(); err != nil {
				b.Fatalf("tar: %v %s", err, o)
			}
		}
		if o, err := exec.Command("mksquashfs", tree, out, "-noappend", "-quiet", "-no-progress", "-comp", "lz4").CombinedOutput(); err != nil {
			b.Fatalf("mksquashfs: %v %s", err, o)
		}
		manual = append(manual, time.Since(start))
		fi, _ = os.Stat(out)
		manualSize = fi.Size()
		os.RemoveAll(tree)
		os.Remove(out)
	}
	med := func(d []time.Duration) float64 {
		s := slices.Clone(d)
		slices.Sort(s)
		return float64(s[len(s)/2].Microseconds()) / 1e3
	}
	b.ReportMetric(med(conv), "convert-ms")
	b.ReportMetric(med(manual), "tar-mksquashfs-ms")
	b.ReportMetric(med(conv)/med(manual), "ratio")
	b.ReportMetric(float64(compressed)/1e6, "image-MB")
	b.Logf("root image %.1f MB (mksquashfs of the extracted tree: %.1f MB)", float64(rootSize)/1e6, float64(manualSize)/1e6)
}

// BenchmarkCached is the warm path: resolving the reference of an image
// already in the cache and finding its root, by tag (pull missing), by
// digest and from a layout directory. None touches the network.
func BenchmarkCached(b *testing.B) {
	needSqfstar(b)
	reg := ocitest.NewRegistry()
	defer reg.Close()
	l, err := ocitest.Layer([]ocitest.File{{Name: "a", Mode: 0o644, Body: []byte("a")}}, "gzip")
	if err != nil {
		b.Fatal(err)
	}
	amd, _ := ocitest.Image("amd64", v1.Config{}, l)
	arm, _ := ocitest.Image("arm64", v1.Config{}, l)
	idx, _ := ocitest.Index(amd, arm)
	ref, digest, err := reg.Push("bench/img", "v1", idx)
	if err != nil {
		b.Fatal(err)
	}
	layoutDir := filepath.Join(b.TempDir(), "layout")
	if err := ocitest.WriteLayout(layoutDir, idx); err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	ctx := context.Background()
	for _, r := range []string{ref, layoutDir} {
		if _, err := oci.Prepare(ctx, r, oci.Options{Arch: "amd64", Dir: dir}); err != nil {
			b.Fatal(err)
		}
	}
	reg.Requests()
	for _, c := range []struct{ name, ref string }{
		{"tag", ref}, {"digest", strings.Split(ref, ":v1")[0] + "@" + digest}, {"layout", layoutDir},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				im, err := oci.Prepare(ctx, c.ref, oci.Options{Arch: "amd64", Dir: dir})
				if err != nil || im.Converted {
					b.Fatal(im, err)
				}
			}
			if r := reg.Requests(); len(r) != 0 {
				b.Errorf("the cached path made requests: %v", r)
			}
		})
	}
}
