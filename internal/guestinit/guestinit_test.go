//go:build linux

package guestinit

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/supermachine-go/supermachine-kernel/internal/initconfig"
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

// Settings apply in order: defaults, the archive's file, the segment's
// file, the command line; mounts and agent arguments add up.
func TestLoad(t *testing.T) {
	root := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(root, "supermachine"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(initconfig.ArchiveFile, "root \"/dev/vdb\"\noverlay_size \"1g\"\nmount \"a\" \"/a\" \"tmpfs\" \"\"\nagent_arg \"-debug\"\n")
	cfg, err := load(root, "console=ttyS0")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Root != "/dev/vdb" || cfg.RootFSType != "squashfs" || cfg.OverlaySize != "1g" || cfg.RootWait != 5 || len(cfg.Mounts) != 1 {
		t.Fatalf("archive only: %+v", cfg)
	}
	write(initconfig.BootFile, `root "/dev/vdc"`+"\n"+`mount "/lower/x y" "/x: y" "bind" ""`+"\n")
	cfg, err = load(root, `supermachine.root=/dev/vdd "supermachine.mount=b:/b c:tmpfs:size=1m" supermachine.rescue`)
	if err != nil {
		t.Fatal(err)
	}
	want := initconfig.Config{Root: "/dev/vdd", RootFSType: "squashfs", OverlaySize: "1g", UpperFSType: "ext4", RootWait: 5,
		Mounts: []initconfig.Mount{{Source: "a", Target: "/a", FSType: "tmpfs"}, {Source: "/lower/x y", Target: "/x: y", FSType: "bind"},
			{Source: "b", Target: "/b c", FSType: "tmpfs", Options: "size=1m"}},
		AgentArgs: []string{"-debug"}, Rescue: true}
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("got %+v\nwant %+v", cfg, want)
	}
	write(initconfig.BootFile, `mount "x" "" "ext4" ""`)
	if _, err := load(root, ""); err == nil || !strings.Contains(err.Error(), initconfig.BootFile) {
		t.Fatalf("bad segment file: %v", err)
	}
	if _, err := load(t.TempDir(), ""); err == nil {
		t.Fatal("no settings file accepted")
	}
}
