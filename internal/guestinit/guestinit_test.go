//go:build linux

package guestinit

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
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

// hostileRoot makes dir/root, a root tree whose symbolic links lead out
// of it when followed on the host, and dir/outside and dir/rw, what they
// would reach there. It returns the root and a descriptor of it.
func hostileRoot(t *testing.T, dir string) (string, int) {
	t.Helper()
	root := filepath.Join(dir, "root")
	for _, d := range []string{"root/etc", "root/rw", "root/outside", "root/src", "outside", "rw"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for link, to := range map[string]string{
		"data":     "/etc",                   // absolute: the host's /etc
		"up":       "../../rw",               // climbs to dir/rw
		"abs":      "/../../../outside",      // climbs to dir/outside, absolutely
		"dangling": "/nowhere",               // missing in the root
		"loop":     "loop2", "loop2": "loop", // never ends
	} {
		if err := os.Symlink(to, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if dup, err := openInRoot(fd, "."); errors.Is(err, unix.ENOSYS) {
		// The guest kernel has it; an emulator of user space may not
		// (qemu-user 7.2).
		t.Skipf("no openat2 here: %v", err)
	} else if err == nil {
		unix.Close(dup)
	}
	return root, fd
}

// mkdirInRoot creates directories where a process chrooted into the root
// would find them: symbolic links and ".." never lead out of it.
func TestMkdirInRoot(t *testing.T) {
	dir := t.TempDir()
	root, rootFD := hostileRoot(t, dir)
	unique := "supermachine-" + filepath.Base(dir)
	for _, tt := range []struct {
		target, want string // want: where the directory is, under dir
	}{
		{"/a/b/c", "root/a/b/c"},
		{"/a/b/c", "root/a/b/c"}, // again: it exists
		{"/data/" + unique, "root/etc/" + unique},
		{"/up/y", "root/rw/y"},
		{"/abs/z", "root/outside/z"},
		{"/../../../top", "root/top"},
		{"data/./rel", "root/etc/rel"},
		{"/", "root"},
	} {
		fd, err := mkdirInRoot(rootFD, tt.target)
		if err != nil {
			t.Errorf("%s: %v", tt.target, err)
			continue
		}
		var got, want unix.Stat_t
		err = unix.Fstat(fd, &got)
		unix.Close(fd)
		if err != nil {
			t.Fatal(err)
		}
		if err := unix.Stat(filepath.Join(dir, tt.want), &want); err != nil {
			t.Errorf("%s: %v", tt.target, err)
			continue
		}
		if got.Dev != want.Dev || got.Ino != want.Ino {
			t.Errorf("%s: the descriptor is not %s", tt.target, tt.want)
		}
	}
	for _, p := range []string{"rw/y", "outside/z", "top", "/etc/" + unique, "/nowhere", "root/nowhere"} {
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s was created, out of the root or through a missing link's target", p)
		}
	}

	for _, tt := range []struct {
		target string
		want   error
		msg    string
	}{
		{"/dangling/x", os.ErrNotExist, "mkdir /dangling: a symbolic link to /nowhere, which is missing"},
		{"/file/x", unix.ENOTDIR, "/file"},
		{"/loop/x", unix.ELOOP, "/loop"},
	} {
		fd, err := mkdirInRoot(rootFD, tt.target)
		if err == nil {
			unix.Close(fd)
			t.Errorf("%s: no error", tt.target)
			continue
		}
		if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%s: %v; want %v naming %q", tt.target, err, tt.want, tt.msg)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "dangling")); err == nil {
		t.Error("the dangling link's target was created")
	}
}

// fillRoot mounts on the directory a chrooted process would find at
// the target, the remount that gives a bind mount its flags applies to
// that mount, and /dev, /proc and /sys move into the root. Run as root,
// in a mount namespace of its own.
func TestFillRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	dir := t.TempDir()
	root, _ := hostileRoot(t, dir)
	if err := os.WriteFile(filepath.Join(root, "src", "f"), []byte("bound"), 0o644); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the thread, and the mount namespace with its
		// mounts, end with this goroutine.
		runtime.LockOSThread()
		errc <- mountInNamespace(root)
	}()
	if err := <-errc; errors.Is(err, errNoNamespace) {
		t.Skip(err)
	} else if err != nil {
		t.Fatal(err)
	}
	// The mounts are gone with the namespace; what they were made on
	// stays, inside the root.
	for _, p := range []string{"root/etc/x", "root/rw/y"} {
		if fi, err := os.Stat(filepath.Join(dir, p)); err != nil || !fi.IsDir() {
			t.Errorf("%s: %v", p, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "rw", "y")); err == nil {
		t.Error("rw/y was created out of the root")
	}
}

var errNoNamespace = errors.New("no mount namespace of its own")

// mountInNamespace moves the calling thread into a new mount namespace,
// fills root with a tmpfs on /data/x, /src bound read-only on /up/y and
// the early mounts, and checks where they are.
func mountInNamespace(root string) error {
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return errors.Join(errNoNamespace, err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return errors.Join(errNoNamespace, err)
	}
	// Opened in the new namespace: mounts on it stay there.
	rootFD, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(rootFD)
	early := map[string]unix.Stat_t{}
	for _, m := range earlyMounts {
		var st unix.Stat_t
		if err := unix.Stat(m.target, &st); err != nil {
			return err
		}
		early[m.target] = st
	}
	err = fillRoot(context.Background(), rootFD, []initconfig.Mount{
		{Source: "tmpfs", Target: "/data/x", FSType: "tmpfs", Options: "size=1m"},
		{Source: root + "/src", Target: "/up/y", FSType: "bind", Options: "ro,nosuid"},
	}, 0)
	if err != nil {
		return err
	}
	for target, was := range early {
		var st unix.Stat_t
		if err := unix.Stat(root+target, &st); err != nil {
			return err
		}
		if st.Dev != was.Dev || st.Ino != was.Ino {
			return errors.New(target + " was not moved into the root")
		}
	}
	if _, err := os.Stat(root + "/run"); err != nil {
		return err
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(root+"/etc/x", &fs); err != nil {
		return err
	}
	if fs.Type != unix.TMPFS_MAGIC {
		return errors.New("no tmpfs on /etc/x in the root")
	}
	if b, err := os.ReadFile(root + "/rw/y/f"); err != nil || string(b) != "bound" {
		return errors.Join(errors.New("/src not bound on /rw/y in the root"), err)
	}
	if err := unix.Statfs(root+"/rw/y", &fs); err != nil {
		return err
	}
	if fs.Flags&unix.ST_RDONLY == 0 || fs.Flags&unix.ST_NOSUID == 0 {
		return errors.New("the bind mount on /rw/y is not read-only and nosuid")
	}
	if err := os.WriteFile(root+"/rw/y/g", nil, 0o644); !errors.Is(err, unix.EROFS) {
		return errors.Join(errors.New("writing to the read-only bind mount"), err)
	}
	return nil
}
