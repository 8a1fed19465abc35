//go:build linux

package guestinit

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestMountOptions(t *testing.T) {
	for _, tt := range []struct {
		opts  string
		flags uintptr
		data  string
	}{
		{"", 0, ""},
		{"ro,noatime", unix.MS_RDONLY | unix.MS_NOATIME, ""},
		{"ro,rw,nosuid,size=64m,mode=0755", unix.MS_NOSUID, "size=64m,mode=0755"},
		{"defaults,trans=virtio,version=9p2000.L,,nodev", unix.MS_NODEV, "trans=virtio,version=9p2000.L"},
		{"rec,ro", unix.MS_REC | unix.MS_RDONLY, ""},
	} {
		flags, data := MountOptions(tt.opts)
		if flags != tt.flags || data != tt.data {
			t.Errorf("%q: flags %#x data %q, want %#x %q", tt.opts, flags, data, tt.flags, tt.data)
		}
	}
}

// deleteContents removes the files of one filesystem and leaves the
// directory itself.
func TestDeleteContents(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"a", "a/b", "c"} {
		if err := unix.Mkdir(dir+"/"+d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	fd, _ := unix.Open(dir+"/a/b/f", unix.O_CREAT|unix.O_WRONLY, 0o644)
	unix.Close(fd)
	unix.Symlink("/nonexistent", dir+"/c/l")
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	deleteContents(dir, st.Dev)
	var left []string
	for _, p := range []string{"a", "a/b", "a/b/f", "c", "c/l"} {
		if unix.Lstat(dir+"/"+p, &unix.Stat_t{}) == nil {
			left = append(left, p)
		}
	}
	if len(left) > 0 || unix.Stat(dir, &st) != nil {
		t.Fatalf("left %q", left)
	}
	// Another device number: nothing is removed.
	unix.Mkdir(dir+"/keep", 0o755)
	deleteContents(dir, st.Dev+1)
	if unix.Stat(dir+"/keep", &st) != nil {
		t.Fatal("deleted across filesystems")
	}
}
