//go:build unix

package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// commit writes data through CreateWith and Replace.
func commit(t *testing.T, dest, data string, perm fs.FileMode, o Options) error {
	t.Helper()
	f, err := CreateWith(dest, perm, o)
	if err != nil {
		return err
	}
	defer f.Cleanup()
	if _, err := f.Write([]byte(data)); err != nil {
		t.Fatal(err)
	}
	return f.Replace()
}

func TestCreateWithOwner(t *testing.T) {
	dir := t.TempDir()
	dest := filepath.Join(dir, "f")
	uid, gid := os.Getuid(), os.Getgid()
	want := Owner{UID: uid, GID: gid}
	if uid == 0 {
		want = Owner{UID: 65534, GID: 65534}
	}
	// setuid and setgid survive the change of owner (which clears
	// them): the mode is set after it.
	perm := fs.ModeSetuid | fs.ModeSetgid | 0o750
	if err := commit(t, dest, "owned", perm, Options{Owner: &want}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(dest)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != perm {
		t.Errorf("mode %v, want %v", fi.Mode(), perm)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if int(st.Uid) != want.UID || int(st.Gid) != want.GID {
		t.Errorf("owner %d:%d, want %d:%d", st.Uid, st.Gid, want.UID, want.GID)
	}
	assertOnly(t, dir, "f")

	// -1 leaves the group as created.
	if err := commit(t, dest, "uid only", 0o644, Options{Owner: &Owner{UID: want.UID, GID: -1}}); err != nil {
		t.Fatal(err)
	}
	fi, _ = os.Lstat(dest)
	if st := fi.Sys().(*syscall.Stat_t); int(st.Gid) != gid {
		t.Errorf("GID -1: group %d, want the writer's %d", st.Gid, gid)
	}
}

func TestCreateWithOwnerRefused(t *testing.T) {
	if os.Getuid() == 0 {
		t.Skip("root may give files away")
	}
	dir := t.TempDir()
	dest := filepath.Join(dir, "f")
	err := commit(t, dest, "x", 0o644, Options{Owner: &Owner{UID: 0, GID: 0}})
	if !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("chown to root as user %d: %v, want a permission error", os.Getuid(), err)
	}
	if _, err := os.Lstat(dest); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("destination exists after a failed commit: %v", err)
	}
	assertOnly(t, dir)
}

func TestCreateWithReplaceSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	os.WriteFile(target, []byte("target"), 0o644)
	link := filepath.Join(dir, "link")
	dangling := filepath.Join(dir, "dangling")
	os.Symlink(target, link)
	os.Symlink(filepath.Join(dir, "nowhere"), dangling)

	for _, dest := range []string{link, dangling} {
		if err := commit(t, dest, "x", 0o644, Options{}); !errors.Is(err, ErrSymlink) {
			t.Errorf("%s without ReplaceSymlink: %v, want ErrSymlink", dest, err)
		}
		if err := commit(t, dest, "replaced", 0o600, Options{ReplaceSymlink: true}); err != nil {
			t.Fatalf("%s: %v", dest, err)
		}
		assertContent(t, dest, "replaced", 0o600)
	}
	assertContent(t, target, "target", 0o644)
	assertOnly(t, dir, "dangling", "link", "target")

	// A directory is still refused.
	if err := commit(t, dir, "x", 0o644, Options{ReplaceSymlink: true}); !errors.Is(err, syscall.EISDIR) {
		t.Errorf("directory with ReplaceSymlink: %v, want EISDIR", err)
	}
}
