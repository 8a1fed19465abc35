package extract

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/supermachine-go/supermachine-kernel/internal/atomicfile"
)

func TestDecode(t *testing.T) {
	for _, src := range []Source{busybox(), busyboxArm64()} {
		b, err := Decode(src)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(b)) != src.Size || sha(b) != src.SHA256 {
			t.Fatalf("Decode: %d bytes, sha256 %s; want %d, %s", len(b), sha(b), src.Size, src.SHA256)
		}
		if !bytes.HasPrefix(b, []byte("\x7fELF")) {
			t.Errorf("decoded %s is not an ELF file", src.Name)
		}
	}
}

func TestNewReaderStreams(t *testing.T) {
	src := busybox()
	r, err := NewReader(src)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	// A small buffer: many reads, each hashed on the way.
	n, err := io.CopyBuffer(h, r, make([]byte, 1000))
	if err != nil {
		t.Fatal(err)
	}
	if n != src.Size || hex.EncodeToString(h.Sum(nil)) != src.SHA256 {
		t.Fatalf("streamed %d bytes, want %d", n, src.Size)
	}
	if _, err := r.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("Read after the end = %v, want io.EOF", err)
	}
}

func TestNewReaderFromRaw(t *testing.T) {
	src := busybox()
	raw, err := Decode(src)
	if err != nil {
		t.Fatal(err)
	}
	src.Raw = raw
	r, _ := NewReader(src)
	if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, raw) {
		t.Fatalf("reader over Raw: %d bytes, %v", len(got), err)
	}
	// A caller that modified the decoded bytes gets an error, not
	// silently wrong bytes.
	raw[100] ^= 1
	r, _ = NewReader(src)
	if _, err := io.ReadAll(r); !errors.Is(err, ErrChecksum) {
		t.Fatalf("reader over modified Raw: err = %v, want ErrChecksum", err)
	}
	dest := filepath.Join(t.TempDir(), "busybox")
	if err := WriteFile(context.Background(), dest, src, testMode, false); !errors.Is(err, ErrChecksum) {
		t.Fatalf("WriteFile of modified Raw: err = %v, want ErrChecksum", err)
	}
	assertAbsent(t, dest)
}

func TestCorruptBlob(t *testing.T) {
	good := busybox()
	// The stream header, the middle of the LZMA2 data, the block check
	// and the stream footer.
	for _, off := range []int{7, len(good.XZ) / 2, len(good.XZ) - 30, len(good.XZ) - 3} {
		src := corrupt(good, off)
		_, err := Decode(src)
		var ce *ChecksumError
		if !errors.As(err, &ce) || !errors.Is(err, ErrChecksum) {
			t.Fatalf("offset %d: Decode err = %v, want a *ChecksumError", off, err)
		}
		if ce.Name != "busybox" || !strings.Contains(err.Error(), "busybox") {
			t.Errorf("offset %d: error does not name the asset: %v", off, err)
		}
		if r, err := NewReader(src); err == nil {
			_, err = io.Copy(io.Discard, r)
			if !errors.Is(err, ErrChecksum) {
				t.Errorf("offset %d: reader err = %v, want ErrChecksum", off, err)
			}
		} else if !errors.Is(err, ErrChecksum) {
			t.Errorf("offset %d: NewReader err = %v, want ErrChecksum", off, err)
		}

		dir := t.TempDir()
		dest := filepath.Join(dir, "busybox")
		err = WriteFile(context.Background(), dest, src, testMode, false)
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), dest) {
			t.Errorf("offset %d: WriteFile err = %v, want a *ChecksumError naming %s", off, err, dest)
		}
		assertEmptyDir(t, dir)

		cdir := t.TempDir()
		if _, err := (Cache{Dir: cdir}).Path(context.Background(), src, "busybox", testMode); !errors.Is(err, ErrChecksum) {
			t.Errorf("offset %d: Cache.Path err = %v, want ErrChecksum", off, err)
		}
		assertNoFiles(t, cdir)
	}
}

func TestWrongManifest(t *testing.T) {
	// The blob is fine but the promise is not: a wrong hash and a
	// wrong length are both reported with what was found.
	src := busybox()
	src.SHA256 = strings.Repeat("0", 64)
	_, err := Decode(src)
	var ce *ChecksumError
	if !errors.As(err, &ce) || ce.GotSHA256 != busybox().SHA256 || ce.GotSize != src.Size {
		t.Fatalf("wrong hash: err = %#v", err)
	}
	for _, size := range []int64{busybox().Size - 1, busybox().Size + 1} {
		src := busybox()
		src.Size = size
		if _, err := Decode(src); !errors.As(err, &ce) || !strings.Contains(err.Error(), "bytes, want") {
			t.Fatalf("size %d: err = %v", size, err)
		}
	}
}

func TestWriteFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for _, mode := range []fs.FileMode{0o755, 0o644} {
		src := busybox()
		dest := filepath.Join(dir, "busybox-"+mode.String())
		if err := WriteFile(ctx, dest, src, mode, false); err != nil {
			t.Fatal(err)
		}
		assertFile(t, dest, src, mode)
		// Overwrite an existing file, of another size and mode.
		os.WriteFile(dest, []byte("old"), 0o600)
		if err := WriteFile(ctx, dest, src, mode, false); err != nil {
			t.Fatal(err)
		}
		assertFile(t, dest, src, mode)
	}
	// A relative path (no directory part).
	t.Chdir(dir)
	if err := WriteFile(ctx, "relative", busybox(), testMode, false); err != nil {
		t.Fatal(err)
	}
	assertFile(t, filepath.Join(dir, "relative"), busybox(), testMode)
}

func TestWriteFileWithParents(t *testing.T) {
	dest := filepath.Join(t.TempDir(), "a", "b", "c", "busybox")
	if err := WriteFile(context.Background(), dest, busybox(), testMode, true); err != nil {
		t.Fatal(err)
	}
	assertFile(t, dest, busybox(), testMode)
	fi, _ := os.Stat(filepath.Dir(dest))
	if !fi.IsDir() {
		t.Fatal("parent not created")
	}
}

func TestWriteFileCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dir := t.TempDir()
	err := WriteFile(ctx, filepath.Join(dir, "busybox"), busybox(), testMode, false)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	assertEmptyDir(t, dir)

	// Canceled mid-way: after the first chunk.
	ctx, cancel = context.WithCancel(context.Background())
	testHookChunk = func(string, int64) { cancel() }
	defer func() { testHookChunk = nil }()
	err = WriteFile(ctx, filepath.Join(dir, "busybox"), busybox(), testMode, false)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	assertEmptyDir(t, dir)
}

func TestCache(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	c := Cache{Dir: root}
	src := busybox()
	p, err := c.Path(ctx, src, "busybox", testMode)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(root, src.SHA256, "busybox"); p != want {
		t.Fatalf("path %s, want %s", p, want)
	}
	assertFile(t, p, src, testMode)
	stamp := filepath.Join(root, src.SHA256, ".busybox.verified")
	if s := readStamp(stamp); !strings.Contains(s, src.SHA256) {
		t.Fatalf("stamp = %q", s)
	}
	fi1, _ := os.Stat(p)

	// Warm: the same file, not rewritten.
	for _, verify := range []bool{false, true} {
		p2, err := Cache{Dir: root, Verify: verify}.Path(ctx, src, "busybox", testMode)
		if err != nil || p2 != p {
			t.Fatalf("warm (verify=%v): %s, %v", verify, p2, err)
		}
		fi2, _ := os.Stat(p)
		if !os.SameFile(fi1, fi2) {
			t.Fatalf("warm (verify=%v) rewrote the file", verify)
		}
	}
	// A second asset gets its own directory.
	p3, err := c.Path(ctx, busyboxArm64(), "busybox", testMode)
	if err != nil || p3 == p {
		t.Fatalf("second asset: %s, %v", p3, err)
	}
	assertFile(t, p3, busyboxArm64(), testMode)
	assertNoTemps(t, root)
}

func TestCacheRepairs(t *testing.T) {
	ctx := context.Background()
	src := busybox()
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, path string)
		verify bool
	}{
		// Same size, same mode: only the stamp (change time) or a
		// full check notices.
		{"flipped byte, stamp stale", flipByte, false},
		{"flipped byte, verify", flipByte, true},
		{"flipped byte, stamp forged", func(t *testing.T, p string) {
			flipByte(t, p)
			fi, _ := os.Lstat(p)
			os.WriteFile(stampPath(filepath.Dir(p), "busybox"), []byte(stampLine(src, fi)), 0o644)
		}, true},
		{"truncated", func(t *testing.T, p string) { os.Truncate(p, 10) }, false},
		{"wrong mode", func(t *testing.T, p string) { os.Chmod(p, 0o600) }, false},
		{"removed", func(t *testing.T, p string) { os.Remove(p) }, false},
		{"stamp removed", func(t *testing.T, p string) { os.Remove(stampPath(filepath.Dir(p), "busybox")) }, false},
		{"directory", func(t *testing.T, p string) { os.Remove(p); os.Mkdir(p, 0o755) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Cache{Dir: t.TempDir(), Verify: tc.verify}
			p, err := c.Path(ctx, src, "busybox", testMode)
			if err != nil {
				t.Fatal(err)
			}
			tc.damage(t, p)
			p2, err := c.Path(ctx, src, "busybox", testMode)
			if tc.name == "directory" {
				// A directory squatting on the name is reported.
				if !errors.Is(err, syscall.EISDIR) && !errors.Is(err, syscall.EEXIST) && !errors.Is(err, syscall.ENOTEMPTY) {
					t.Fatalf("err = %v, want a clear error", err)
				}
				return
			}
			if err != nil || p2 != p {
				t.Fatalf("%s, %v", p2, err)
			}
			assertFile(t, p, src, testMode)
			if err := VerifyFile(p, src); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestCacheEmptyDir(t *testing.T) {
	if _, err := (Cache{}).Path(context.Background(), busybox(), "busybox", testMode); err == nil {
		t.Fatal("no error for an empty cache directory")
	}
}

func TestVerifyFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "busybox")
	if err := WriteFile(context.Background(), p, busybox(), testMode, false); err != nil {
		t.Fatal(err)
	}
	if err := VerifyFile(p, busybox()); err != nil {
		t.Fatal(err)
	}
	flipByte(t, p)
	var ce *ChecksumError
	if err := VerifyFile(p, busybox()); !errors.As(err, &ce) || ce.Path != p || !strings.Contains(err.Error(), p) {
		t.Fatalf("VerifyFile of a changed file: %v", err)
	}
	os.Symlink(p, p+".link")
	if err := VerifyFile(p+".link", busybox()); err == nil {
		t.Fatal("VerifyFile followed a symlink")
	}
}

func TestCleanStale(t *testing.T) {
	dir := t.TempDir()
	old := time.Now().Add(-2 * atomicfile.StaleAge)
	abandonedTmp := filepath.Join(dir, ".busybox.tmp-123")
	freshTmp := filepath.Join(dir, ".busybox.tmp-456")
	other := filepath.Join(dir, ".kernel.tmp-789")
	for _, p := range []string{abandonedTmp, freshTmp, other} {
		os.WriteFile(p, []byte("x"), 0o600)
	}
	os.Chtimes(abandonedTmp, old, old)
	os.Chtimes(other, old, old)
	if err := WriteFile(context.Background(), filepath.Join(dir, "busybox"), busybox(), testMode, false); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]bool{abandonedTmp: false, freshTmp: true, other: true} {
		if _, err := os.Stat(p); (err == nil) != want {
			t.Errorf("%s: exists = %v, want %v", filepath.Base(p), err == nil, want)
		}
	}
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func flipByte(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	f.ReadAt(b, 1000)
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, 1000); err != nil {
		t.Fatal(err)
	}
}

// assertFile checks that path is a regular file holding src with
// permission bits mode.
func assertFile(t *testing.T, path string, src Source, mode fs.FileMode) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm() != mode {
		t.Errorf("%s: mode %v, want %v", path, fi.Mode(), mode)
	}
	if err := VerifyFile(path, src); err != nil {
		t.Error(err)
	}
}

func assertAbsent(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s exists (err %v)", path, err)
	}
}

// assertEmptyDir checks that nothing, not even a temporary file, is in dir.
func assertEmptyDir(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		t.Errorf("left behind in %s: %s", dir, e.Name())
	}
}

// assertNoFiles checks that the tree under root holds directories only.
func assertNoFiles(t *testing.T, root string) {
	t.Helper()
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			t.Errorf("left behind: %s", p)
		}
		return nil
	})
}

// assertNoTemps checks that no temporary file is left under root.
func assertNoTemps(t *testing.T, root string) {
	t.Helper()
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.Contains(d.Name(), ".tmp-") {
			t.Errorf("temporary file left behind: %s", p)
		}
		return nil
	})
}
