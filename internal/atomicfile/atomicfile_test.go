package atomicfile

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestWriteFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	dest := filepath.Join(dir, "f")
	for _, tc := range []struct {
		data []byte
		perm fs.FileMode
	}{
		{[]byte("hello"), 0o644},
		{[]byte("replaced, longer than before"), 0o755},
		{make([]byte, 3*chunkSize+7), 0o600}, // several chunks
		{nil, 0o644},
		{[]byte{}, 0o644},
	} {
		if err := WriteFile(ctx, dest, tc.data, tc.perm); err != nil {
			t.Fatalf("%d bytes: %v", len(tc.data), err)
		}
		assertContent(t, dest, string(tc.data), tc.perm)
		assertOnly(t, dir, "f")
	}
	// A relative path (no directory part).
	t.Chdir(dir)
	if err := WriteFile(ctx, "relative", []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	assertContent(t, filepath.Join(dir, "relative"), "x", 0o644)
}

// TestWriteFileNilIsEmpty checks that nil and empty data are the same:
// an empty file, no error.
func TestWriteFileNilIsEmpty(t *testing.T) {
	dir := t.TempDir()
	for name, data := range map[string][]byte{"nil": nil, "empty": {}} {
		p := filepath.Join(dir, name)
		if err := WriteFile(context.Background(), p, data, 0o644); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		assertContent(t, p, "", 0o644)
	}
}

func TestWriteFileErrors(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		setup  func(dir string) string // returns dest
		target error
		substr string
	}{
		{"missing parent", func(dir string) string { return filepath.Join(dir, "missing", "f") }, fs.ErrNotExist, "parent directory"},
		{"parent is a file", func(dir string) string {
			os.WriteFile(filepath.Join(dir, "file"), nil, 0o644)
			return filepath.Join(dir, "file", "f")
		}, syscall.ENOTDIR, "not a directory"},
		{"directory", func(dir string) string {
			os.Mkdir(filepath.Join(dir, "f"), 0o755)
			return filepath.Join(dir, "f")
		}, syscall.EISDIR, "is a directory"},
		{"dangling symlink", func(dir string) string {
			os.Symlink(filepath.Join(dir, "nowhere"), filepath.Join(dir, "f"))
			return filepath.Join(dir, "f")
		}, ErrSymlink, "dangling"},
		{"symlink to a file", func(dir string) string {
			os.WriteFile(filepath.Join(dir, "target"), []byte("keep"), 0o644)
			os.Symlink(filepath.Join(dir, "target"), filepath.Join(dir, "f"))
			return filepath.Join(dir, "f")
		}, ErrSymlink, "refusing to follow or replace"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			dest := tc.setup(dir)
			before := listDir(t, dir)
			err := WriteFile(ctx, dest, []byte("new"), 0o644)
			var pe *fs.PathError
			if !errors.As(err, &pe) || pe.Path != dest || pe.Op != "write" {
				t.Fatalf("err = %#v, want an *fs.PathError for %s", err, dest)
			}
			if !errors.Is(err, tc.target) || !strings.Contains(err.Error(), tc.substr) {
				t.Fatalf("err = %v, want %v and %q", err, tc.target, tc.substr)
			}
			if after := listDir(t, dir); after != before {
				t.Fatalf("directory changed: %q, was %q", after, before)
			}
			if b, err := os.ReadFile(filepath.Join(dir, "target")); err == nil && string(b) != "keep" {
				t.Fatal("wrote through the symlink")
			}
		})
	}
}

func TestWriteFileCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dir := t.TempDir()
	err := WriteFile(ctx, filepath.Join(dir, "f"), []byte("x"), 0o644)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	assertOnly(t, dir)
}

// TestCleanup checks that a File that is never committed leaves nothing,
// and that a committed one cannot be committed again.
func TestCleanup(t *testing.T) {
	dir := t.TempDir()
	dest := filepath.Join(dir, "f")
	f, err := Create(dest, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(filepath.Base(f.Name()), ".f.tmp-") || filepath.Dir(f.Name()) != dir {
		t.Errorf("temporary file %s, want .f.tmp-* in %s", f.Name(), dir)
	}
	f.Write([]byte("partial"))
	f.Cleanup()
	f.Cleanup()
	assertOnly(t, dir)
	if err := f.Replace(); err == nil {
		t.Fatal("Replace after Cleanup: no error")
	}
	assertOnly(t, dir)
}

// TestLink checks that Link never replaces: the first file stays, and
// the second writer learns that it existed.
func TestLink(t *testing.T) {
	dir := t.TempDir()
	dest := filepath.Join(dir, "f")
	for i, data := range []string{"first", "second"} {
		f, err := Create(dest, 0o755)
		if err != nil {
			t.Fatal(err)
		}
		f.Write([]byte(data))
		existed, err := f.Link()
		f.Cleanup()
		if err != nil || existed != (i == 1) {
			t.Fatalf("Link %d: existed %v, %v", i, existed, err)
		}
		assertContent(t, dest, "first", 0o755)
		assertOnly(t, dir, "f")
	}
}

// TestCleanStale checks which temporary files Create removes: abandoned
// and old ones of its own destination, not fresh ones, not locked ones,
// not those of other names.
func TestCleanStale(t *testing.T) {
	dir := t.TempDir()
	old := time.Now().Add(-2 * StaleAge)
	abandonedTmp := filepath.Join(dir, ".f.tmp-123")
	freshTmp := filepath.Join(dir, ".f.tmp-456")
	other := filepath.Join(dir, ".g.tmp-789")
	for _, p := range []string{abandonedTmp, freshTmp, other} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	os.Chtimes(abandonedTmp, old, old)
	os.Chtimes(other, old, old)

	// An old temporary file a live writer still holds stays.
	live, err := Create(filepath.Join(dir, "f"), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Cleanup()
	os.Chtimes(live.Name(), old, old)
	flock := runtime.GOOS == "linux" || runtime.GOOS == "darwin" || strings.HasSuffix(runtime.GOOS, "bsd")

	if err := WriteFile(context.Background(), filepath.Join(dir, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]bool{abandonedTmp: false, freshTmp: true, other: true, live.Name(): flock} {
		if _, err := os.Stat(p); (err == nil) != want {
			t.Errorf("%s: exists = %v, want %v", filepath.Base(p), err == nil, want)
		}
	}
}

// assertContent checks that path is a regular file holding data with
// permission perm.
func assertContent(t *testing.T, path, data string, perm fs.FileMode) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm() != perm {
		t.Errorf("%s: mode %v, want %v", path, fi.Mode(), perm)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != data {
		t.Errorf("%s: %d bytes (%v), want %d", path, len(b), err, len(data))
	}
}

// assertOnly checks that dir holds exactly the entries names.
func assertOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	if got, want := listDir(t, dir), strings.Join(names, " "); got != want {
		t.Errorf("%s holds %q, want %q", dir, got, want)
	}
}

func listDir(t *testing.T, dir string) string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return strings.Join(names, " ")
}
