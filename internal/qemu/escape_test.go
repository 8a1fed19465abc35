package qemu

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// parseOpts splits a QEMU option value as QEMU does: at single commas,
// ",," standing for a comma.
func parseOpts(s string) []string {
	var parts []string
	var cur strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == ',' {
			if i+1 < len(s) && s[i+1] == ',' {
				cur.WriteByte(',')
				i++
				continue
			}
			parts = append(parts, cur.String())
			cur.Reset()
			continue
		}
		cur.WriteByte(s[i])
	}
	return append(parts, cur.String())
}

// optionValue returns the value of key in the first occurrence of flag
// whose options contain key.
func optionValue(args []string, flag, key string) (string, bool) {
	for i := 0; i+1 < len(args); i++ {
		if args[i] != flag {
			continue
		}
		for _, kv := range parseOpts(args[i+1]) {
			if v, ok := strings.CutPrefix(kv, key+"="); ok {
				return v, true
			}
		}
	}
	return "", false
}

// flagValue returns the argument after flag.
func flagValue(args []string, flag string) string {
	if i := slices.Index(args, flag); i >= 0 && i+1 < len(args) {
		return args[i+1]
	}
	return ""
}

// Every path a user can pass reaches QEMU whole: commas doubled inside
// options QEMU splits, the others as they are.
func TestArgsEscapeUserValues(t *testing.T) {
	for _, name := range []string{"a,b", "with space", "k=v,x=y", "ünïcødé", ",,lead,", "a,,b"} {
		dir := "/tmp/" + name
		c := Config{
			Arch: "arm64", Shape: ShapeVirtualization,
			Kernel: dir + "/Image", Initrd: dir + "/initrd,x.cpio", DTB: dir + "/virt,x.dtb",
			Disks:       []Disk{{Path: dir + "/root.sqfs", ReadOnly: true}},
			AgentSocket: dir + "/agent.sock",
			Shares9P:    []Share9P{{Tag: "t,ag", Path: dir + "/share", ReadOnly: true}},
		}
		_, args, err := c.Args(TCG)
		if err != nil {
			t.Fatalf("%q: %v", name, err)
		}
		if got, _ := optionValue(args, "-drive", "file"); got != c.Disks[0].Path {
			t.Errorf("%q: -drive file=%q, want %q (%q)", name, got, c.Disks[0].Path, args)
		}
		if got, _ := optionValue(args, "-chardev", "path"); got != c.AgentSocket {
			t.Errorf("%q: -chardev path=%q, want %q", name, got, c.AgentSocket)
		}
		for flag, want := range map[string]string{"-kernel": c.Kernel, "-initrd": c.Initrd, "-dtb": c.DTB} {
			if got := flagValue(args, flag); got != want {
				t.Errorf("%q: %s %q, want %q as it is", name, flag, got, want)
			}
		}
		if ro, _ := optionValue(args, "-drive", "readonly"); ro != "on" {
			t.Errorf("%q: the path ate the next option: readonly=%q", name, ro)
		}
		if got, _ := optionValue(args, "-fsdev", "path"); got != c.Shares9P[0].Path {
			t.Errorf("%q: -fsdev path=%q, want %q", name, got, c.Shares9P[0].Path)
		}
		if ro, _ := optionValue(args, "-fsdev", "readonly"); ro != "on" {
			t.Errorf("%q: the 9p path ate the next option: readonly=%q", name, ro)
		}
		if got, _ := optionValue(args, "-device", "mount_tag"); got != "t,ag" {
			t.Errorf("%q: mount_tag=%q", name, got)
		}
	}
}

// A relative disk path becomes absolute, so that QEMU cannot read its
// start as a protocol ("a:" in "a:b/root.sqfs").
func TestArgsDiskPathAbsolute(t *testing.T) {
	c := Config{Arch: "amd64", Kernel: "/k", Disks: []Disk{{Path: "a:b/root.sqfs"}}}
	_, args, err := c.Args(TCG)
	if err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	if got, _ := optionValue(args, "-drive", "file"); got != filepath.Join(wd, "a:b/root.sqfs") {
		t.Errorf("-drive file=%q", got)
	}
}

// What QEMU cannot take at all is refused, naming it.
func TestArgsRefused(t *testing.T) {
	long := "/tmp/" + strings.Repeat("d", 120) + "/agent.sock"
	for _, tc := range []struct {
		c    Config
		want string
	}{
		{Config{Arch: "amd64", Kernel: "/k", AgentSocket: long}, "the agent socket " + long + " is 136 bytes long"},
		{Config{Arch: "amd64"}, "no kernel image"},
		{Config{Arch: "amd64", Kernel: "/k", Disks: []Disk{{}}}, "disk 0 has no path"},
		{Config{Arch: "amd64", Kernel: "/k", Shares9P: []Share9P{{Tag: "t"}}}, "9p share 0 has no path"},
		{Config{Arch: "amd64", Kernel: "/k", Shares9P: []Share9P{{Path: "/x", Tag: strings.Repeat("t", 32)}}}, "9p share /x: tag"},
		{Config{Arch: "amd64", Kernel: "/k", Append: []string{strings.Repeat("x", 2048)}}, "the kernel command line is"},
		{Config{Arch: "amd64", Kernel: "/k", VirtioFS: []VirtioFS{{Socket: "/s"}}}, "virtio-fs device 0 has no tag"},
		{Config{Arch: "amd64", Kernel: "/k", VirtioFS: []VirtioFS{{Tag: "t", Socket: long}}}, "virtio-fs socket " + long},
	} {
		if _, _, err := tc.c.Args(TCG); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %v, want one with %q", err, tc.want)
		}
	}
}

// A virtio-fs device gets the guest memory as a shared memfd (which the
// daemon maps), a virtio 1.0 transport and its socket path whole, on
// every shape.
func TestArgsVirtioFS(t *testing.T) {
	for _, tc := range []struct {
		arch   string
		shape  Shape
		device string
	}{
		{"amd64", ShapeMMIO, "vhost-user-fs-device"},
		{"arm64", ShapeMMIO, "vhost-user-fs-device"},
		{"amd64", ShapePCI, "vhost-user-fs-pci"},
		{"arm64", ShapeVirtualization, "vhost-user-fs-pci"},
	} {
		c := Config{Arch: tc.arch, Shape: tc.shape, Kernel: "/k", MemoryMiB: 300,
			VirtioFS: []VirtioFS{{Tag: "root", Socket: "/tmp/a,b/fs0.sock"}, {Tag: "share0", Socket: "/tmp/fs1.sock"}}}
		_, args, err := c.Args(TCG)
		if err != nil {
			t.Fatalf("%s %s: %v", tc.arch, tc.shape, err)
		}
		joined := strings.Join(args, " ")
		if m := flagValue(args, "-M"); !strings.Contains(m, ",memory-backend=mem") {
			t.Errorf("%s %s: -M %s has no memory-backend", tc.arch, tc.shape, m)
		}
		if !strings.Contains(joined, "-object memory-backend-memfd,id=mem,size=300M,share=on") {
			t.Errorf("%s %s: no shared memfd of the guest's size: %q", tc.arch, tc.shape, args)
		}
		if legacy := strings.Contains(joined, "virtio-mmio.force-legacy=false"); legacy == tc.shape.pci() {
			t.Errorf("%s %s: virtio-mmio.force-legacy=false given: %v", tc.arch, tc.shape, legacy)
		}
		if got, _ := optionValue(args, "-chardev", "path"); got != "/tmp/a,b/fs0.sock" {
			t.Errorf("%s %s: socket path %q", tc.arch, tc.shape, got)
		}
		for _, want := range []string{tc.device + ",chardev=vfs0,tag=root", tc.device + ",chardev=vfs1,tag=share0"} {
			if !slices.Contains(args, want) {
				t.Errorf("%s %s: no -device %s in %q", tc.arch, tc.shape, want, args)
			}
		}
	}
}
