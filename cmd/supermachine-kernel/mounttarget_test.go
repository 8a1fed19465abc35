package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/supermachine-go/supermachine-kernel/internal/bootfiles"
	"github.com/supermachine-go/supermachine-kernel/internal/qemu"
	"github.com/supermachine-go/supermachine-kernel/internal/rootfs"
	"github.com/supermachine-go/supermachine-kernel/kernel"
)

// A -mount target reached through a symbolic link of the root image is
// where the guest finds it: an absolute link (/data -> /etc) resolves
// inside the root, and a relative one that climbs (/up -> ../../rw)
// stops at the root, as a chroot into the image would resolve them; in
// the initramfs both would lead elsewhere (its /etc, its /rw).
func TestBootMountThroughSymlink(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a guest")
	}
	bin, pkg, _ := qemu.Binary(kernel.Arch)
	for tool, p := range map[string]string{bin: pkg, "mksquashfs": "squashfs-tools"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed: apt-get install %s", tool, p)
		}
	}
	a, err := bootfiles.For(kernel.Arch)
	if err != nil {
		t.Fatal(err)
	}
	bb, err := a.Busybox.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	tree := filepath.Join(t.TempDir(), "root")
	if err := rootfs.WriteBusyboxTree(tree, bb, nil); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(tree, "rw"), 0o755); err != nil {
		t.Fatal(err)
	}
	for link, to := range map[string]string{"data": "/etc", "up": "../../rw"} {
		if err := os.Symlink(to, filepath.Join(tree, link)); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errs := runCLI(t, "boot", "-kvm", "off", "-root", tree,
		"-mount", "tmpfs:/data/x:tmpfs:size=1m", "-mount", "tmpfs:/up/y:tmpfs:size=2m",
		"--", "cat", "/proc/self/mountinfo")
	if code != 0 {
		t.Fatalf("boot: exit %d\n%s", code, errs)
	}
	for _, want := range []string{"/etc/x", "/rw/y"} {
		if fstype := mountAt(out, want); fstype != "tmpfs" {
			t.Errorf("the guest has no tmpfs on %s (found %q); its mounts:\n%s", want, fstype, out)
		}
	}
}

// mountAt returns the filesystem type mounted on dir in the
// /proc/self/mountinfo text mountinfo (the topmost mount), "" if none.
func mountAt(mountinfo, dir string) string {
	fstype := ""
	for _, line := range strings.Split(mountinfo, "\n") {
		mine, theirs, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(mine), strings.Fields(theirs)
		if ok && len(f) >= 5 && len(g) >= 1 && f[4] == dir {
			fstype = g[0]
		}
	}
	return fstype
}
