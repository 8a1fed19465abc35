//go:build linux

package agent_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/supermachine-go/supermachine-kernel/agent"
)

func TestFileRoundTrip(t *testing.T) {
	c := newClient(t)
	ctx := testCtx(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "big.bin")
	data := make([]byte, 64<<20)
	rand.Read(data)
	if err := c.WriteFile(ctx, path, bytes.NewReader(data), 0o640, nil); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode() != 0o640 || fi.Size() != int64(len(data)) {
		t.Fatalf("stat: %v %v", fi, err)
	}
	f, err := c.OpenFile(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if f.Size() != int64(len(data)) || f.Mode() != 0o640 {
		t.Fatalf("OpenFile: size %d mode %v", f.Size(), f.Mode())
	}
	got, err := io.ReadAll(f)
	f.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes, %v", len(got), err)
	}
	// No temporary files are left behind.
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("dir has %d entries", len(ents))
	}

	// Overwrite atomically with a special mode; ReadFile.
	if err := c.WriteFile(ctx, path, strings.NewReader("small"), 0o4755|fs.ModeSetuid, nil); err != nil {
		t.Fatal(err)
	}
	b, err := c.ReadFile(ctx, path)
	if err != nil || string(b) != "small" {
		t.Fatalf("ReadFile: %q %v", b, err)
	}
	if fi, _ := os.Stat(path); fi.Mode() != 0o755|fs.ModeSetuid {
		t.Fatalf("mode %v", fi.Mode())
	}
	// Empty file.
	empty := filepath.Join(dir, "empty")
	if err := c.WriteFile(ctx, empty, strings.NewReader(""), 0o600, nil); err != nil {
		t.Fatal(err)
	}
	if b, err := c.ReadFile(ctx, empty); err != nil || len(b) != 0 {
		t.Fatalf("empty: %q %v", b, err)
	}
}

func TestFileOptionsAndErrors(t *testing.T) {
	c := newClient(t)
	ctx := testCtx(t)
	dir := t.TempDir()
	missing := filepath.Join(dir, "a", "b", "file")
	err := c.WriteFile(ctx, missing, strings.NewReader("x"), 0o644, nil)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Fatalf("missing dir: %v", err)
	}
	opts := &agent.WriteFileOptions{MkdirAll: true}
	if os.Geteuid() == 0 {
		opts.Chown, opts.UID, opts.GID = true, 65534, 65534
	}
	if err := c.WriteFile(ctx, missing, strings.NewReader("x"), 0o644, opts); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		uid, gid := fileOwner(t, missing)
		if uid != 65534 || gid != 65534 {
			t.Fatalf("owner %d:%d", uid, gid)
		}
	}
	_, err = c.ReadFile(ctx, filepath.Join(dir, "nope"))
	var ae *agent.Error
	if !errors.As(err, &ae) || !errors.Is(err, fs.ErrNotExist) || ae.Path != filepath.Join(dir, "nope") {
		t.Fatalf("read missing: %v", err)
	}
	if _, err := c.ReadFile(ctx, dir); err == nil || !strings.Contains(err.Error(), dir) {
		t.Fatalf("read dir: %v", err)
	}
	if err := c.WriteFile(ctx, dir, strings.NewReader("x"), 0o644, nil); err == nil {
		t.Fatal("write over a directory succeeded")
	}
	if err := c.WriteFile(ctx, "relative/path", strings.NewReader("x"), 0o644, nil); err == nil {
		t.Fatal("relative path accepted")
	}
	// A failing reader aborts the write and leaves the old file.
	target := filepath.Join(dir, "keep")
	os.WriteFile(target, []byte("old"), 0o644)
	r := io.MultiReader(strings.NewReader("new data"), errReader{})
	if err := c.WriteFile(ctx, target, r, 0o644, nil); err == nil {
		t.Fatal("write with failing reader succeeded")
	}
	if b, _ := os.ReadFile(target); string(b) != "old" {
		t.Fatalf("target changed to %q", b)
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("boom") }

// An owner and setuid/setgid bits together: the owner is set first
// (changing it clears those bits), so the file keeps its whole mode.
func TestWriteFileOwnerKeepsSetuid(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("giving a file away needs root")
	}
	c := newClient(t)
	ctx := testCtx(t)
	path := filepath.Join(t.TempDir(), "setuid")
	mode := 0o755 | fs.ModeSetuid | fs.ModeSetgid
	opts := &agent.WriteFileOptions{Chown: true, UID: 65534, GID: 65534}
	if err := c.WriteFile(ctx, path, strings.NewReader("x"), mode, opts); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode() != mode {
		t.Fatalf("mode %v (%v), want %v", fi.Mode(), err, mode)
	}
	if uid, gid := fileOwner(t, path); uid != 65534 || gid != 65534 {
		t.Fatalf("owner %d:%d", uid, gid)
	}
}

// A symbolic link at the path is replaced by the file, not followed.
func TestWriteFileReplacesSymlink(t *testing.T) {
	c := newClient(t)
	ctx := testCtx(t)
	dir := t.TempDir()
	target, link := filepath.Join(dir, "target"), filepath.Join(dir, "link")
	os.WriteFile(target, []byte("target"), 0o644)
	os.Symlink(target, link)
	if err := c.WriteFile(ctx, link, strings.NewReader("new"), 0o600, nil); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 {
		t.Fatalf("link: %v %v, want a regular file 0600", fi, err)
	}
	if b, _ := os.ReadFile(link); string(b) != "new" {
		t.Errorf("link holds %q", b)
	}
	if b, _ := os.ReadFile(target); string(b) != "target" {
		t.Errorf("the link's target changed to %q", b)
	}
}
