package initramfs

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"reflect"
	"testing"

	"github.com/cavaliergopher/cpio"

	"github.com/supermachine-go/supermachine-kernel/internal/initconfig"
)

func testOptions() Options {
	return Options{Busybox: []byte("busybox-bytes"), Agent: []byte("agent-bytes")}
}

type entry struct {
	mode cpio.FileMode
	data string
	link string
}

func readArchive(t *testing.T, b []byte) (names []string, entries map[string]entry) {
	t.Helper()
	entries = map[string]entry{}
	r := cpio.NewReader(bytes.NewReader(b))
	for {
		h, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		if h.Uid != 0 || h.Guid != 0 || h.ModTime.Unix() != 0 {
			t.Errorf("%s: uid %d gid %d mtime %v, want 0 0 epoch", h.Name, h.Uid, h.Guid, h.ModTime)
		}
		names = append(names, h.Name)
		entries[h.Name] = entry{h.Mode, string(data), h.Linkname}
	}
	return names, entries
}

func TestArchiveLayout(t *testing.T) {
	b, err := Build(testOptions())
	if err != nil {
		t.Fatal(err)
	}
	names, e := readArchive(t, b)
	for name, want := range map[string]string{"bin/busybox": "busybox-bytes", "init": "agent-bytes"} {
		if e[name].data != want || e[name].mode.Perm() != 0o755 || !e[name].mode.IsRegular() {
			t.Errorf("%s: %+v", name, e[name])
		}
	}
	for _, a := range Applets {
		if l := e["bin/"+a]; l.link != "busybox" || l.mode&^cpio.ModePerm != cpio.TypeSymlink {
			t.Errorf("bin/%s: %+v, want a symlink to busybox", a, l)
		}
	}
	for _, d := range []string{"dev", "proc", "sys", "lower", "rw", "newroot", "supermachine"} {
		if !e[d].mode.IsDir() {
			t.Errorf("%s is not a directory", d)
		}
	}
	// The default settings file sets nothing: the init's defaults apply.
	if s, ok := e["supermachine/init.conf"]; !ok || s.data != "" || !s.mode.IsRegular() {
		t.Errorf("settings file: %+v", s)
	}
	// The kernel unpacks in order: directories before their entries.
	if names[len(names)-1] != "init" {
		t.Errorf("last entry %q, want init", names[len(names)-1])
	}
}

func TestDeterministic(t *testing.T) {
	o := testOptions()
	o.Gzip = true
	a, err := Build(o)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Build(o)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatal("two builds differ")
	}
	zr, err := gzip.NewReader(bytes.NewReader(a))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	o.Gzip = false
	plain, _ := Build(o)
	if !bytes.Equal(raw, plain) {
		t.Fatal("gzip archive does not decode to the plain archive")
	}
}

// The settings file carries the options as typed data, values with
// blanks, quotes and shell metacharacters included, and the init's own
// decoder reads back what Build wrote.
func TestSettingsFile(t *testing.T) {
	o := testOptions()
	o.Root, o.RootFSType, o.RootOptions, o.OverlaySize, o.RootWait = "/dev/vdc", "ext4", "noatime", "64m", 2
	o.Mounts = []Mount{
		{Source: "/dev/vdb", Target: "/data", FSType: "ext4", Options: "noatime,ro"},
		{Source: "/lower/home/a b'$(reboot)", Target: "/mnt/it's here; *", FSType: "bind"},
	}
	o.AgentArgs = []string{"-vsock-port", "2000", "$(reboot)"}
	o.Rescue = true
	b, err := Build(o)
	if err != nil {
		t.Fatal(err)
	}
	_, e := readArchive(t, b)
	got, err := initconfig.Decode([]byte(e["supermachine/init.conf"].data))
	if err != nil {
		t.Fatal(err)
	}
	want := initconfig.Config{Root: "/dev/vdc", RootFSType: "ext4", RootOptions: "noatime", OverlaySize: "64m", RootWait: 2,
		Mounts: []initconfig.Mount{
			{Source: "/dev/vdb", Target: "/data", FSType: "ext4", Options: "noatime,ro"},
			{Source: "/lower/home/a b'$(reboot)", Target: "/mnt/it's here; *", FSType: "bind"},
		},
		AgentArgs: []string{"-vsock-port", "2000", "$(reboot)"}, Rescue: true}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decoded %+v\nwant %+v", got, want)
	}
}

// A segment appended to an archive adds the per-boot settings file, and
// the concatenation reads as one archive.
func TestSegment(t *testing.T) {
	base, err := Build(testOptions())
	if err != nil {
		t.Fatal(err)
	}
	seg, err := Segment(Settings{Mounts: []Mount{{Source: "/lower/a:b c", Target: "/a:b c", FSType: "bind", Options: "ro"}}})
	if err != nil {
		t.Fatal(err)
	}
	_, e := readArchive(t, seg)
	got, err := initconfig.Decode([]byte(e["supermachine/boot.conf"].data))
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Mounts) != 1 || got.Mounts[0].Target != "/a:b c" || got.Mounts[0].Options != "ro" {
		t.Fatalf("segment settings %+v", got)
	}
	if _, err := Segment(Settings{OverlaySize: "lots"}); !errors.Is(err, ErrBadOption) || !errors.Is(err, ErrBadSetting) {
		t.Fatalf("bad segment: %v", err)
	}
	// cpio.Reader stops at the first trailer; the kernel does not, so
	// read each archive of the concatenation.
	all := append(base, seg...)
	if !bytes.HasPrefix(all[len(base):], []byte("070701")) {
		t.Fatal("the segment does not start a new newc archive")
	}
}

func TestContentKey(t *testing.T) {
	o := testOptions()
	k1, err := ContentKey(o, "bb", "ag")
	if err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*Options){
		"root":   func(o *Options) { o.Root = "/dev/vdb" },
		"mount":  func(o *Options) { o.Mounts = []Mount{{Source: "t", Target: "/t", FSType: "virtiofs"}} },
		"gzip":   func(o *Options) { o.Gzip = true },
		"rescue": func(o *Options) { o.Rescue = true },
	} {
		o := testOptions()
		mod(&o)
		k2, err := ContentKey(o, "bb", "ag")
		if err != nil || k2 == k1 {
			t.Errorf("%s: key %s, %v: want a key other than %s", name, k2, err, k1)
		}
	}
	if k, _ := ContentKey(o, "bb", "other"); k == k1 {
		t.Error("the agent's hash does not change the key")
	}
	if _, err := ContentKey(o, "", "ag"); !errors.Is(err, ErrBadOption) {
		t.Errorf("no busybox hash: %v", err)
	}
}

func TestBadOptions(t *testing.T) {
	for name, mod := range map[string]func(*Options){
		"no busybox":       func(o *Options) { o.Busybox = nil },
		"no agent":         func(o *Options) { o.Agent = nil },
		"bad size":         func(o *Options) { o.OverlaySize = "1 g" },
		"bad fs type":      func(o *Options) { o.RootFSType = "ext5" },
		"relative target":  func(o *Options) { o.Mounts = []Mount{{Source: "/dev/vdb", Target: "data", FSType: "ext4"}} },
		"no target":        func(o *Options) { o.Mounts = []Mount{{Source: "/dev/vdb", FSType: "ext4"}} },
		"negative wait":    func(o *Options) { o.RootWait = -1 },
		"no mount fs type": func(o *Options) { o.Mounts = []Mount{{Source: "/dev/vdb", Target: "/d"}} },
	} {
		o := testOptions()
		mod(&o)
		if _, err := Build(o); !errors.Is(err, ErrBadOption) {
			t.Errorf("%s: err = %v, want ErrBadOption", name, err)
		}
	}
}
