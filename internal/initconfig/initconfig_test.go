package initconfig

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestSplitCmdline(t *testing.T) {
	got := SplitCmdline(`console=ttyS0 quiet  supermachine.mount=a:/b:ext4 "supermachine.mount=/lower/x y:/x y:bind" ` +
		`init="/sbin/my init" a=b=c x=1 x=2 * -- supermachine.root=/dev/vdb` + "\n")
	want := []Param{{"console", "ttyS0"}, {"quiet", ""}, {"supermachine.mount", "a:/b:ext4"},
		{"supermachine.mount", "/lower/x y:/x y:bind"}, {"init", "/sbin/my init"}, {"a", "b=c"}, {"x", "1"}, {"x", "2"}, {"*", ""}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q\nwant %q", got, want)
	}
}

func TestFromCmdline(t *testing.T) {
	c, err := FromCmdline(SplitCmdline(`supermachine.root=/dev/vdb supermachine.rootfstype=ext4 supermachine.rootoptions=noatime,data=ordered supermachine.overlay_size=1g ` +
		`supermachine.rootwait=3 supermachine.mount=/dev/vdc:/data:ext4:ro,noatime "supermachine.mount=/lower/a b:/a b:bind" ` +
		`supermachine.rescue supermachine.vsock_port=5 supermachine.frobnicate=1 root=/dev/sda`))
	if err != nil {
		t.Fatal(err)
	}
	want := Config{Root: "/dev/vdb", RootFSType: "ext4", RootOptions: "noatime,data=ordered", OverlaySize: "1g", RootWait: 3, Rescue: true,
		Mounts: []Mount{{"/dev/vdc", "/data", "ext4", "ro,noatime"}, {"/lower/a b", "/a b", "bind", ""}}}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("got %+v\nwant %+v", c, want)
	}
}

// A malformed value fails with an error naming the parameter.
func TestFromCmdlineBad(t *testing.T) {
	for _, word := range []string{
		"supermachine.mount=/dev/vdb", "supermachine.mount=/dev/vdb::ext4", "supermachine.mount=/dev/vdb:data:ext4",
		"supermachine.mount=:/data:ext4", "supermachine.mount=/dev/vdb:/data/../../etc:ext4", "supermachine.overlay_size=lots", "supermachine.overlay_size=1x",
		"supermachine.rootwait=soon", "supermachine.rootwait=0", "supermachine.rootfstype=ext5",
		"supermachine.root=", "supermachine.rescue=maybe",
	} {
		_, err := FromCmdline(SplitCmdline("console=ttyS0 " + word))
		var ce *CmdlineError
		if !errors.As(err, &ce) || !errors.Is(err, ErrBadSetting) || !strings.Contains(err.Error(), word) {
			t.Errorf("%s: err = %v, want a CmdlineError naming it", word, err)
		}
	}
}

func TestCheckSize(t *testing.T) {
	for _, ok := range []string{"50%", "100", "64m", "1G", "2k"} {
		if err := CheckSize(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "%", "m", "1 g", "1mm", "-1", "1.5g", "12%%"} {
		if err := CheckSize(bad); !errors.Is(err, ErrBadSetting) {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestMergeAndCodec(t *testing.T) {
	c := Defaults()
	c.Merge(Config{Root: "share", RootFSType: "virtiofs", Mounts: []Mount{{"a", "/a", "tmpfs", ""}}, AgentArgs: []string{"-debug"}})
	c.Merge(Config{Mounts: []Mount{{"b", "/b", "tmpfs", ""}}, RootWait: 9})
	want := Config{Root: "share", RootFSType: "virtiofs", OverlaySize: "50%", UpperFSType: "ext4", RootWait: 9,
		Mounts: []Mount{{"a", "/a", "tmpfs", ""}, {"b", "/b", "tmpfs", ""}}, AgentArgs: []string{"-debug"}}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("merged %+v\nwant %+v", c, want)
	}
	b, err := Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Decode(b)
	if err != nil || !reflect.DeepEqual(back, c) {
		t.Fatalf("round trip: %+v %v", back, err)
	}
	for _, bad := range []string{
		`roots "x"`, `mount "a" "" "ext4" ""`, `mount "a" "/a" "ext4"`, `root /dev/vda`, `root "a" "b"`,
		`root "unterminated`, `rootwait "soon"`, `rescue "maybe"`, `overlay_size "lots"`,
	} {
		if _, err := Decode([]byte("# settings\n\n" + bad + "\n")); !errors.Is(err, ErrBadSetting) || !strings.Contains(err.Error(), "line 3") {
			t.Errorf("%s: %v, want ErrBadSetting naming line 3", bad, err)
		}
	}
}

// Any byte goes through a settings file: blanks, quotes, newlines.
func TestCodecAnyBytes(t *testing.T) {
	c := Config{Root: "tag with \"quotes\"\nand a newline", RootFSType: "virtiofs", RootOptions: "a,b=\"c d\"", Rescue: true,
		Mounts:    []Mount{{"/lower/a b:c", "/a b:c $(reboot)", "bind", "ro"}},
		AgentArgs: []string{"-debug", "`x` 'y' \\ z"}}
	b, err := Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Decode(b)
	if err != nil || !reflect.DeepEqual(back, c) {
		t.Fatalf("round trip of %q: %+v %v", b, back, err)
	}
	if empty, err := Encode(Config{}); err != nil || len(empty) != 0 {
		t.Fatalf("empty settings: %q %v", empty, err)
	}
}
