package initramfs

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cavaliergopher/cpio"
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
	_, e := readArchive(t, b)
	for name, want := range map[string]string{"bin/busybox": "busybox-bytes", "bin/supermachine-agent": "agent-bytes"} {
		if e[name].data != want || e[name].mode.Perm() != 0o755 || !e[name].mode.IsRegular() {
			t.Errorf("%s: %+v", name, e[name])
		}
	}
	init := e["init"]
	if init.mode.Perm() != 0o755 || !strings.HasPrefix(init.data, "#!/bin/sh\n") {
		t.Errorf("init: mode %v, starts %q", init.mode, init.data[:min(20, len(init.data))])
	}
	for _, a := range Applets {
		if l := e["bin/"+a]; l.link != "busybox" || l.mode&^cpio.ModePerm != cpio.TypeSymlink {
			t.Errorf("bin/%s: %+v, want a symlink to busybox", a, l)
		}
	}
	for _, d := range []string{"dev", "proc", "sys", "newroot"} {
		if !e[d].mode.IsDir() {
			t.Errorf("%s is not a directory", d)
		}
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

func TestScriptSettings(t *testing.T) {
	o := testOptions()
	o.Root, o.RootFSType, o.OverlaySize = "/dev/vdc", "ext4", "64m"
	o.Mounts = []Mount{{Source: "/dev/vdb", Target: "/data", FSType: "ext4", Options: "noatime,ro"}, {Source: "share", Target: "/mnt/share", FSType: "virtiofs"}}
	o.AgentArgs = []string{"-vsock-port", "2000"}
	s, err := Script(o)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"ROOT='/dev/vdc'", "ROOTFSTYPE='ext4'", "OVERLAY_SIZE='64m'",
		"MOUNTS='/dev/vdb:/data:ext4:noatime,ro share:/mnt/share:virtiofs'",
		"AGENT_ARGS='-vsock-port 2000'", "supermachine.root=*",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("script lacks %q", want)
		}
	}
	d, err := Script(testOptions())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ROOT='/dev/vda'", "ROOTFSTYPE='squashfs'", "OVERLAY_SIZE='50%'", "ROOTWAIT='5'", "UPPER=''"} {
		if !strings.Contains(d, want) {
			t.Errorf("default script lacks %q", want)
		}
	}
}

// The generated script must at least parse as a POSIX shell script.
func TestScriptParses(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh on PATH")
	}
	s, err := Script(testOptions())
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "init")
	if err := os.WriteFile(p, []byte(s), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(sh, "-n", p).CombinedOutput(); err != nil {
		t.Fatalf("sh -n: %v\n%s", err, out)
	}
}

func TestBadOptions(t *testing.T) {
	for name, mod := range map[string]func(*Options){
		"no busybox":       func(o *Options) { o.Busybox = nil },
		"no agent":         func(o *Options) { o.Agent = nil },
		"quote in root":    func(o *Options) { o.Root = "/dev/vda'; reboot" },
		"space in size":    func(o *Options) { o.OverlaySize = "1 g" },
		"relative target":  func(o *Options) { o.Mounts = []Mount{{Source: "/dev/vdb", Target: "data", FSType: "ext4"}} },
		"colon in source":  func(o *Options) { o.Mounts = []Mount{{Source: "a:b", Target: "/d", FSType: "ext4"}} },
		"negative wait":    func(o *Options) { o.RootWait = -1 },
		"dollar in arg":    func(o *Options) { o.AgentArgs = []string{"$(reboot)"} },
		"no mount fs type": func(o *Options) { o.Mounts = []Mount{{Source: "/dev/vdb", Target: "/d"}} },
	} {
		o := testOptions()
		mod(&o)
		if _, err := Build(o); !errors.Is(err, ErrBadOption) {
			t.Errorf("%s: err = %v, want ErrBadOption", name, err)
		}
	}
}
