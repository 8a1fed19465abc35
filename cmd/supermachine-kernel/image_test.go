package main

import (
	"archive/tar"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/supermachine-go/supermachine-kernel/internal/extract"
	"github.com/supermachine-go/supermachine-kernel/internal/guestassets"
	"github.com/supermachine-go/supermachine-kernel/internal/oci/ocitest"
	"github.com/supermachine-go/supermachine-kernel/internal/oci/ocitest/listing"
	"github.com/supermachine-go/supermachine-kernel/internal/qemu"
)

func TestImageFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		say  string
	}{
		{[]string{"boot", "-image", "x", "-root", "y", "--", "true"}, "-image and -root"},
		{[]string{"boot", "-arch", "riscv64", "--", "true"}, `-arch "riscv64"`},
		{[]string{"boot", "-image", "x", "-pull", "sometimes"}, "-pull"},
		{[]string{"boot", "-e", "=x", "--", "true"}, `-e "=x"`},
		{[]string{"images", "-rm", "nothing-like-this"}, "no cached image matches"},
	} {
		code, _, errs := runCLI(t, c.args...)
		if code != 1 || !strings.Contains(errs, c.say) {
			t.Errorf("%q: exit %d, %q; want 1 and a message with %q", c.args, code, errs, c.say)
		}
	}
	im := imageFlags{env: multiFlag{"B=explicit", "C"}}
	t.Setenv("C", "from host")
	if got := mergeEnv([]string{"A=1", "B=image"}, im.env); !slices.Equal(got, []string{"A=1", "B=explicit", "C=from host"}) {
		t.Errorf("mergeEnv: %q", got)
	}
}

// buildProbe cross-compiles lsprobe for arch.
func buildProbe(t *testing.T, arch string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "lsprobe")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, "../../internal/oci/ocitest/lsprobe")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build lsprobe: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// imageLayers are the layers of a test image for arch: a busybox root
// tree with lsprobe installed setuid root, then layers that delete,
// replace and re-create files (whiteouts, an opaque directory, hard
// links across layers, a file capability, devices and a FIFO).
func imageLayers(t *testing.T, arch string) [][]ocitest.File {
	t.Helper()
	set, err := guestassets.For(arch)
	if err != nil {
		t.Fatal(err)
	}
	bb, err := extract.Decode(set.Busybox)
	if err != nil {
		t.Fatal(err)
	}
	base := ocitest.BusyboxFiles(bb)
	base = append(base,
		ocitest.File{Name: "usr/bin/lsprobe", Mode: 0o4755, Body: buildProbe(t, arch), MTime: 1700000000},
		ocitest.File{Name: "srv/", Type: tar.TypeDir, Mode: 0o755, MTime: 1700000000},
		ocitest.File{Name: "srv/data", Mode: 0o640, UID: 1000, GID: 1000, Body: []byte("data\n"), MTime: 1600000000},
		ocitest.File{Name: "opq/hidden", Mode: 0o644, Body: []byte("hidden")},
		ocitest.File{Name: "etc/old", Mode: 0o644, Body: []byte("old")},
	)
	second := []ocitest.File{
		{Name: "bin/.wh.false"},
		{Name: "etc/.wh.old"},
		{Name: "etc/group", Mode: 0o600, Body: []byte("root:x:0:\napp:x:1000:\n"), MTime: 1700000100},
		{Name: "opq/.wh..wh..opq"},
		{Name: "opq/fresh", Mode: 0o644, Body: []byte("fresh")},
		{Name: "srv/link", Type: tar.TypeLink, Link: "srv/data"},
		{Name: "usr/sbin/ping", Mode: 0o755, Body: []byte("#!/bin/sh\necho ping\n"), MTime: 1700000200,
			Xattrs: map[string]string{"security.capability": "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", "user.origin": "test"}},
	}
	third := []ocitest.File{
		{Name: "etc/old", Mode: 0o644, Body: []byte("re-created"), MTime: 1700000300},
		{Name: "srv/data", Mode: 0o644, Body: []byte("new data\n")}, // srv/link keeps the old inode
		{Name: "devices/null", Type: tar.TypeChar, Mode: 0o666, Major: 1, Minor: 3},
		{Name: "devices/loop0", Type: tar.TypeBlock, Mode: 0o660, GID: 6, Major: 7},
		{Name: "devices/fifo", Type: tar.TypeFifo, Mode: 0o620},
		{Name: "usr/sbin/ping6", Type: tar.TypeLink, Link: "usr/sbin/ping"},
	}
	return [][]ocitest.File{base, second, third}
}

func testImage(t *testing.T, arch string) (v1.Image, map[string]string) {
	t.Helper()
	layers := imageLayers(t, arch)
	var ls []v1.Layer
	for i, files := range layers {
		l, err := ocitest.Layer(files, []string{"gzip", "zstd", "none"}[i])
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
	}
	img, err := ocitest.Image(arch, v1.Config{
		Env:        []string{"PATH=/usr/bin:/bin", "GREETING=hello image"},
		WorkingDir: "/srv", User: "app",
		Entrypoint: []string{"/usr/bin/lsprobe"}, Cmd: []string{"7"},
	}, ls...)
	if err != nil {
		t.Fatal(err)
	}
	want, err := ocitest.Listing(layers...)
	if err != nil {
		t.Fatal(err)
	}
	// What the layers say, written out by hand for the paths that matter.
	for path, line := range map[string]string{
		"etc/old":         "0 644 0:0 10 " + sha4("re-created") + " t=1700000300",
		"srv/data":        "0 644 0:0 9 " + sha4("new data\n"),
		"srv/link":        "0 640 1000:1000 5 " + sha4("data\n") + " t=1600000000",
		"opq/fresh":       "0 644 0:0 5 " + sha4("fresh"),
		"usr/bin/lsprobe": want["usr/bin/lsprobe"],
		"usr/sbin/ping6":  "1 755 0:0 -> usr/sbin/ping t=1700000200",
		"devices/null":    "3 666 0:0 1,3",
		"devices/fifo":    "6 620 0:0",
	} {
		if want[path] != line || line == "" {
			t.Fatalf("flattened %s: %q, want %q", path, want[path], line)
		}
	}
	for _, gone := range []string{"bin/false", "opq/hidden"} {
		if _, ok := want[gone]; ok {
			t.Fatalf("flattened: %s should be gone", gone)
		}
	}
	if !strings.Contains(want["usr/sbin/ping"], "security.capability=") {
		t.Fatalf("flattened: no capability: %q", want["usr/sbin/ping"])
	}
	return img, want
}

func sha4(s string) string {
	return listing.Entry{Type: '0', Content: []byte(s)}.Line()[len("0 0 0:0 ")+len(fmt.Sprint(len(s)))+1:]
}

// probeOutput splits lsprobe's output into its listing and the rest.
func probeOutput(t *testing.T, out string) (files map[string]string, env []string, wd, user, machine string) {
	t.Helper()
	files = map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		kind, rest, _ := strings.Cut(l, " ")
		switch kind {
		case "F":
			p, line, _ := strings.Cut(rest, "\t")
			files[p] = line
		case "E":
			env = append(env, rest)
		case "W":
			wd = rest
		case "U":
			user = rest
		case "A":
			machine = rest
		}
	}
	return
}

// compareListings checks the guest's root against the flattened image:
// every path the same, except directories the guest mounted something
// on, and what the guest's init adds (the directories it mounts on).
func compareListings(t *testing.T, guest, want map[string]string) {
	t.Helper()
	mounted := 0
	for _, p := range slices.Sorted(maps.Keys(want)) {
		g, ok := guest[p]
		switch {
		case g == listing.MountPoint && strings.HasPrefix(want[p], "5 "):
			mounted++
		case !ok && underMount(p, guest):
		case g != want[p]:
			t.Errorf("guest %s: %q, want %q", p, g, want[p])
		}
	}
	for _, p := range slices.Sorted(maps.Keys(guest)) {
		if _, ok := want[p]; !ok && guest[p] != listing.MountPoint {
			t.Errorf("guest has %s (%q), the image does not", p, guest[p])
		}
	}
	if mounted == 0 || len(guest) < 40 {
		t.Errorf("guest listing has %d paths and %d mount points: not a real listing", len(guest), mounted)
	}
}

func underMount(p string, guest map[string]string) bool {
	for d := filepath.Dir(p); d != "."; d = filepath.Dir(d) {
		if guest[d] == listing.MountPoint {
			return true
		}
	}
	return false
}

// TestBootImage boots container images through the CLI, three boots in
// all: an amd64 multi-layer image from a registry run as docker run
// would (its entrypoint, env, working directory, user and exit code), a
// busybox tree made here from a docker save archive, and the arm64 image
// of a multi-arch index from an OCI archive with explicit -e, -w and -u.
// The guest lists its root, which must be exactly the flattened image
// (lsprobe: modes, owners, times, xattrs, hard links; for the plain
// busybox image its paths and a few modes and owners).
func TestBootImage(t *testing.T) {
	for _, arch := range []string{"amd64", "arm64"} {
		bin, pkg, _ := qemu.Binary(arch)
		for tool, p := range map[string]string{bin: pkg, "sqfstar": "squashfs-tools"} {
			if _, err := exec.LookPath(tool); err != nil {
				if testing.Short() {
					t.Skipf("%s not installed (%s)", tool, p)
				}
				t.Fatalf("%s not installed: apt-get install %s", tool, p)
			}
		}
	}
	amd, wantAMD := testImage(t, "amd64")
	arm, wantARM := testImage(t, "arm64")
	reg := ocitest.NewRegistry()
	defer reg.Close()
	ref, _, err := reg.Push("test/layered", "v1", amd)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := ocitest.Index(amd, arm)
	if err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "multi.oci.tar")
	if err := ocitest.WriteOCIArchive(archive, idx); err != nil {
		t.Fatal(err)
	}
	// The busybox tree alone, as docker save writes it.
	set, _ := guestassets.For("amd64")
	bb, err := extract.Decode(set.Busybox)
	if err != nil {
		t.Fatal(err)
	}
	bbFiles := ocitest.BusyboxFiles(bb)
	bbLayer, err := ocitest.Layer(bbFiles, "gzip")
	if err != nil {
		t.Fatal(err)
	}
	bbImage, err := ocitest.Image("amd64", v1.Config{}, bbLayer)
	if err != nil {
		t.Fatal(err)
	}
	dockerArchive := filepath.Join(t.TempDir(), "busybox.docker.tar")
	if err := ocitest.WriteDockerArchive(dockerArchive, "test/busybox:v1", bbImage); err != nil {
		t.Fatal(err)
	}
	wantBB, err := ocitest.Listing(bbFiles)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, r := range []string{ref, archive, dockerArchive} {
			runCLI(t, "images", "-rm", r)
		}
	}()

	t.Run("amd64-registry-entrypoint", func(t *testing.T) {
		code, out, errs := runCLI(t, "boot", "-image", ref, "-kvm", "off")
		if code != 7 {
			t.Fatalf("boot -image %s: exit %d, want the entrypoint's 7\n%s", ref, code, errs)
		}
		files, env, wd, user, machine := probeOutput(t, out)
		compareListings(t, files, wantAMD)
		if !slices.Contains(env, "GREETING=hello image") || !slices.Contains(env, "PATH=/usr/bin:/bin") || wd != "/srv" ||
			user != "1000:1000 euid 0" || machine != "x86_64" {
			t.Errorf("guest: env %q, working directory %q, user %q, machine %q", env, wd, user, machine)
		}
		code, out, _ = runCLI(t, "images")
		if code != 0 || !strings.Contains(out, ref) {
			t.Errorf("images: exit %d\n%s", code, out)
		}
	})
	t.Run("amd64-docker-archive-busybox", func(t *testing.T) {
		code, out, errs := runCLI(t, "boot", "-image", dockerArchive, "-kvm", "off", "--",
			"sh", "-c", "cd / && find . -xdev | sort && stat -c '%n %a %u:%g' /home/app /tmp /bin/busybox")
		if code != 0 {
			t.Fatalf("boot -image %s: exit %d\n%s", dockerArchive, code, errs)
		}
		var want []string
		for p := range wantBB {
			want = append(want, "./"+p)
		}
		want = append(want, ".")
		slices.Sort(want)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != len(want)+3 || !slices.Equal(lines[:len(want)], want) {
			t.Errorf("guest paths:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
		}
		if got := strings.Join(lines[len(lines)-3:], "\n"); got != "/home/app 750 1000:1000\n/tmp 1777 0:0\n/bin/busybox 755 0:0" {
			t.Errorf("guest stat:\n%s", got)
		}
	})
	t.Run("arm64-index-archive-explicit", func(t *testing.T) {
		code, out, errs := runCLI(t, "boot", "-arch", "arm64", "-image", archive, "-kvm", "off",
			"-e", "GREETING=explicit", "-e", "EXTRA=1", "-w", "/tmp", "-u", "0", "--", "/usr/bin/lsprobe", "0")
		if code != 0 {
			t.Fatalf("boot -arch arm64 -image %s: exit %d\n%s", archive, code, errs)
		}
		files, env, wd, user, machine := probeOutput(t, out)
		compareListings(t, files, wantARM)
		if !slices.Contains(env, "GREETING=explicit") || !slices.Contains(env, "EXTRA=1") || !slices.Contains(env, "PATH=/usr/bin:/bin") ||
			wd != "/tmp" || user != "0:0 euid 0" || machine != "aarch64" {
			t.Errorf("guest: env %q, working directory %q, user %q, machine %q", env, wd, user, machine)
		}
	})
}
