package oci_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/supermachine-go/supermachine-kernel/internal/oci"
	"github.com/supermachine-go/supermachine-kernel/internal/oci/ocitest"
)

func needSqfstar(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("sqfstar"); err != nil {
		t.Skip("sqfstar not installed (squashfs-tools)")
	}
}

var testConfig = v1.Config{
	Env: []string{"PATH=/usr/bin:/bin", "GREETING=hello image"}, WorkingDir: "/srv", User: "1000:1000",
	Entrypoint: []string{"/bin/echo"}, Cmd: []string{"hi"},
}

// layeredImage has three layers, one per compression, which delete,
// replace and re-create files.
func layeredImage(t testing.TB, arch string) v1.Image {
	t.Helper()
	dir := func(n string) ocitest.File { return ocitest.File{Name: n + "/", Type: tar.TypeDir, Mode: 0o755} }
	l1 := []ocitest.File{
		dir("etc"), dir("srv"), dir("opq"),
		{Name: "etc/old", Mode: 0o644, Body: []byte("old")},
		{Name: "etc/replaced", Mode: 0o644, Body: []byte("v1")},
		{Name: "opq/hidden", Mode: 0o644, Body: []byte("hidden")},
		{Name: "srv/data", Mode: 0o640, UID: 1000, GID: 1000, Body: []byte("data"), MTime: 1600000000},
	}
	l2 := []ocitest.File{
		{Name: "etc/.wh.old"},
		{Name: "etc/replaced", Mode: 0o600, Body: []byte("v2")},
		{Name: "opq/.wh..wh..opq"},
		{Name: "opq/fresh", Mode: 0o644, Body: []byte("fresh")},
		{Name: "srv/link", Type: tar.TypeLink, Link: "srv/data"},
	}
	l3 := []ocitest.File{
		{Name: "etc/old", Mode: 0o644, Body: []byte("re-created")},
		{Name: "bin/ping", Mode: 0o755, Body: []byte("ping"), Xattrs: map[string]string{"security.capability": "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"}},
		{Name: "dev2/null", Type: tar.TypeChar, Mode: 0o666, Major: 1, Minor: 3},
		{Name: "run2/fifo", Type: tar.TypeFifo, Mode: 0o600},
	}
	var layers []v1.Layer
	for i, c := range []struct {
		files []ocitest.File
		comp  string
	}{{l1, "gzip"}, {l2, "zstd"}, {l3, "none"}} {
		l, err := ocitest.Layer(c.files, c.comp)
		if err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
		layers = append(layers, l)
	}
	img, err := ocitest.Image(arch, testConfig, layers...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// unsquashfsList lists a squashfs image: "mode owner path" per line.
func unsquashfsList(t testing.TB, img string) string {
	t.Helper()
	out, err := exec.Command("unsquashfs", "-lln", "-d", "", img).CombinedOutput()
	if err != nil {
		t.Fatalf("unsquashfs: %v\n%s", err, out)
	}
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		for i := 2; i < len(f); i++ {
			if strings.HasPrefix(f[i], "/") {
				lines = append(lines, f[0]+" "+f[1]+" "+f[i])
				break
			}
		}
	}
	return strings.Join(lines, "\n")
}

func TestPrepareFromEverySource(t *testing.T) {
	needSqfstar(t)
	ctx := context.Background()
	img := layeredImage(t, "amd64")
	reg := ocitest.NewRegistry()
	defer reg.Close()
	ref, _, err := reg.Push("test/layered", "v1", img)
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	layoutDir := filepath.Join(tmp, "layout")
	if err := ocitest.WriteLayout(layoutDir, img); err != nil {
		t.Fatal(err)
	}
	ociArchive := filepath.Join(tmp, "image.oci.tar")
	if err := ocitest.WriteOCIArchive(ociArchive, img); err != nil {
		t.Fatal(err)
	}
	dockerArchive := filepath.Join(tmp, "image.docker.tar")
	if err := ocitest.WriteDockerArchive(dockerArchive, "test/layered:v1", img); err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	var roots [][]byte
	for _, src := range []string{ref, layoutDir, ociArchive, dockerArchive} {
		im, err := oci.Prepare(ctx, src, oci.Options{Arch: "amd64", Dir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		if src != dockerArchive && im.Digest != want.String() {
			t.Errorf("%s: digest %s, want the manifest's %s", src, im.Digest, want)
		}
		if !slices.Equal(im.Config.Env, testConfig.Env) || im.Config.WorkingDir != "/srv" || im.Config.User != "1000:1000" ||
			!slices.Equal(im.Config.Argv(nil), []string{"/bin/echo", "hi"}) || !slices.Equal(im.Config.Argv([]string{"x"}), []string{"x"}) {
			t.Errorf("%s: config %+v", src, im.Config)
		}
		b, err := os.ReadFile(im.Root)
		if err != nil {
			t.Fatal(err)
		}
		roots = append(roots, b)
	}
	for i := 1; i < len(roots); i++ {
		if !bytes.Equal(roots[0], roots[i]) {
			t.Errorf("source %d gave another root image than the registry's: the conversion is not a function of the image", i)
		}
	}
	dir := t.TempDir()
	im, err := oci.Prepare(ctx, layoutDir, oci.Options{Arch: "amd64", Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	list := unsquashfsList(t, im.Root)
	for _, w := range []string{
		"-rw-r--r-- 0/0 /etc/old", "-rw------- 0/0 /etc/replaced", "-rw-r--r-- 0/0 /opq/fresh",
		"-rw-r----- 1000/1000 /srv/data", "-rw-r----- 1000/1000 /srv/link", "crw-rw-rw- 0/0 /dev2/null",
		"prw------- 0/0 /run2/fifo", "-rwxr-xr-x 0/0 /bin/ping",
	} {
		if !strings.Contains(list, w+"\n") && !strings.HasSuffix(list, w) {
			t.Errorf("the root image lacks %q:\n%s", w, list)
		}
	}
	if strings.Contains(list, "/opq/hidden") {
		t.Errorf("the opaque directory kept a lower file:\n%s", list)
	}
	if !im.Converted {
		t.Error("first Prepare did not convert")
	}
	again, err := oci.Prepare(ctx, layoutDir, oci.Options{Arch: "amd64", Dir: dir})
	if err != nil || again.Converted || again.Root != im.Root {
		t.Errorf("second Prepare: %+v, %v; want the cached root", again, err)
	}
}

func TestPrepareCacheAndPull(t *testing.T) {
	needSqfstar(t)
	ctx := context.Background()
	reg := ocitest.NewRegistry()
	defer reg.Close()
	amd, arm := layeredImage(t, "amd64"), layeredImage(t, "arm64")
	idx, err := ocitest.Index(amd, arm)
	if err != nil {
		t.Fatal(err)
	}
	ref, idxDigest, err := reg.Push("test/multi", "latest", idx)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	opts := func(arch string, pull oci.Pull) oci.Options {
		return oci.Options{Arch: arch, Dir: dir, Pull: pull}
	}
	manifests := func(reqs []string) (n int) {
		for _, r := range reqs {
			if strings.Contains(r, "/manifests/") {
				n++
			}
		}
		return n
	}

	if _, err := oci.Prepare(ctx, ref, opts("amd64", oci.PullNever)); !errors.Is(err, oci.ErrNotCached) {
		t.Errorf("pull never, empty cache: %v, want ErrNotCached", err)
	}
	if r := reg.Requests(); len(r) != 0 {
		t.Errorf("pull never made requests: %v", r)
	}
	first, err := oci.Prepare(ctx, ref, opts("arm64", oci.PullMissing))
	if err != nil {
		t.Fatal(err)
	}
	armDigest, _ := arm.Digest()
	if first.Digest != armDigest.String() || first.Arch != "arm64" || !first.Converted {
		t.Errorf("index for arm64: %+v, want the arm64 manifest %s converted", first, armDigest)
	}
	reg.Requests()

	for _, c := range []struct {
		ref  string
		pull oci.Pull
	}{{ref, oci.PullMissing}, {ref, oci.PullNever}, {strings.Split(ref, ":latest")[0] + "@" + idxDigest, oci.PullMissing},
		{strings.Split(ref, ":latest")[0] + "@" + idxDigest, oci.PullAlways},
		{strings.Split(ref, ":latest")[0] + "@" + armDigest.String(), oci.PullNever}} {
		im, err := oci.Prepare(ctx, c.ref, opts("arm64", c.pull))
		if err != nil || im.Converted || im.Root != first.Root {
			t.Errorf("%s, pull %s: %+v, %v; want the cached root", c.ref, c.pull, im, err)
		}
		if r := reg.Requests(); len(r) != 0 {
			t.Errorf("%s, pull %s: a cached image made requests %v", c.ref, c.pull, r)
		}
	}
	im, err := oci.Prepare(ctx, ref, opts("arm64", oci.PullAlways))
	if err != nil || im.Converted || im.Root != first.Root {
		t.Errorf("pull always, same digest: %+v, %v; want the cached root", im, err)
	}
	r := reg.Requests()
	if manifests(r) != 1 {
		t.Errorf("pull always of a cached tag: requests %v, want one manifest request", r)
	}
	t.Logf("pull always of a cached tag: %v", r)

	// The other arch of the same index is another root.
	a, err := oci.Prepare(ctx, ref, opts("amd64", oci.PullMissing))
	amdDigest, _ := amd.Digest()
	if err != nil || a.Digest != amdDigest.String() || a.Root == first.Root {
		t.Errorf("index for amd64: %+v, %v", a, err)
	}

	// A new image under the tag: missing keeps the old one, always
	// fetches the new one.
	arm2, err := mutate.Config(arm, v1.Config{Env: []string{"NEWER=1"}})
	if err != nil {
		t.Fatal(err)
	}
	newer, err := ocitest.Index(arm2, amd)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := reg.Push("test/multi", "latest", newer); err != nil {
		t.Fatal(err)
	}
	if im, _ := oci.Prepare(ctx, ref, opts("arm64", oci.PullMissing)); im == nil || im.Digest != first.Digest {
		t.Errorf("pull missing after the tag moved: %+v, want the cached image", im)
	}
	if im, err := oci.Prepare(ctx, ref, opts("arm64", oci.PullAlways)); err != nil || im.Digest == first.Digest || !im.Converted {
		t.Errorf("pull always after the tag moved: %+v, %v; want the new image", im, err)
	}

	imgs, err := oci.List(dir)
	if err != nil || len(imgs) != 3 {
		t.Errorf("List: %d images (%v), want 3", len(imgs), err)
	}
	n, err := oci.Remove(dir, first.Digest[:19])
	if err != nil || n != 1 {
		t.Errorf("Remove by digest prefix: %d, %v", n, err)
	}
	if _, err := oci.Prepare(ctx, strings.Split(ref, ":latest")[0]+"@"+armDigest.String(), opts("arm64", oci.PullNever)); !errors.Is(err, oci.ErrNotCached) {
		t.Errorf("after Remove: %v, want ErrNotCached", err)
	}
	if n, err := oci.Remove(dir, "all"); err != nil || n != 2 {
		t.Errorf("Remove all: %d, %v", n, err)
	}
	if imgs, _ := oci.List(dir); len(imgs) != 0 {
		t.Errorf("after Remove all: %v", imgs)
	}
}

// One image under two tags, one of them through an index, is one cache
// entry that List shows with both and that either tag removes; a tag
// that moves to another image leaves the old one's Tags.
func TestTagsOfOneImage(t *testing.T) {
	needSqfstar(t)
	ctx := context.Background()
	reg := ocitest.NewRegistry()
	defer reg.Close()
	amd := layeredImage(t, "amd64")
	idx, err := ocitest.Index(amd, layeredImage(t, "arm64"))
	if err != nil {
		t.Fatal(err)
	}
	first, _, err := reg.Push("test/one", "v1", amd)
	if err != nil {
		t.Fatal(err)
	}
	second, _, err := reg.Push("test/multi", "v2", idx)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	o := oci.Options{Arch: "amd64", Dir: dir}
	a, err := oci.Prepare(ctx, first, o)
	if err != nil {
		t.Fatal(err)
	}
	b, err := oci.Prepare(ctx, second, o)
	if err != nil || b.Converted || b.Root != a.Root {
		t.Fatalf("second tag: %+v, %v; want the cached root", b, err)
	}
	imgs, err := oci.List(dir)
	if err != nil || len(imgs) != 1 || imgs[0].Ref != first || !slices.Equal(imgs[0].Tags, []string{second}) {
		t.Fatalf("List: %+v, %v; want one image from %s, also tagged %s", imgs, err, first, second)
	}

	// Either tag removes the image.
	if n, err := oci.Remove(dir, second); err != nil || n != 1 {
		t.Errorf("Remove(%s): %d, %v; want 1", second, n, err)
	}
	if imgs, _ := oci.List(dir); len(imgs) != 0 {
		t.Errorf("after Remove(%s): %+v, want none", second, imgs)
	}

	// The second tag moves to another image: it names the first no more.
	if _, err := oci.Prepare(ctx, first, o); err != nil {
		t.Fatal(err)
	}
	other, err := mutate.Config(amd, v1.Config{Env: []string{"OTHER=1"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := reg.Push("test/multi", "v2", other); err != nil {
		t.Fatal(err)
	}
	o.Pull = oci.PullAlways
	if c, err := oci.Prepare(ctx, second, o); err != nil || !c.Converted {
		t.Fatalf("the moved tag: %+v, %v; want a new conversion", c, err)
	}
	imgs, _ = oci.List(dir)
	if len(imgs) != 2 {
		t.Fatalf("after the tag moved: %+v, want 2 images", imgs)
	}
	for _, c := range imgs {
		if len(c.Tags) != 0 {
			t.Errorf("%s: tags %q, want none besides its own", c.Ref, c.Tags)
		}
	}
}

// noEntries fails if dir holds any file but ref records.
func noEntries(t *testing.T, dir string) {
	t.Helper()
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.Contains(p, string(filepath.Separator)+"refs"+string(filepath.Separator)) {
			t.Errorf("left in the cache: %s", p)
		}
		return nil
	})
}

func TestPrepareErrors(t *testing.T) {
	needSqfstar(t)
	ctx := context.Background()
	reg := ocitest.NewRegistry()
	defer reg.Close()
	amdOnly, err := ocitest.Index(layeredImage(t, "amd64"))
	if err != nil {
		t.Fatal(err)
	}
	idxRef, _, err := reg.Push("test/amd64only", "v1", amdOnly)
	if err != nil {
		t.Fatal(err)
	}
	singleRef, _, err := reg.Push("test/single", "v1", layeredImage(t, "amd64"))
	if err != nil {
		t.Fatal(err)
	}
	escLayer, _ := ocitest.Layer([]ocitest.File{{Name: "../../etc/evil", Mode: 0o644, Body: []byte("x")}}, "gzip")
	escImg, _ := ocitest.Image("amd64", v1.Config{}, escLayer)
	escRef, _, err := reg.Push("test/escape", "v1", escImg)
	if err != nil {
		t.Fatal(err)
	}
	badLayout := filepath.Join(t.TempDir(), "layout")
	img := layeredImage(t, "amd64")
	if err := ocitest.WriteLayout(badLayout, img); err != nil {
		t.Fatal(err)
	}
	ls, _ := img.Layers()
	ld, _ := ls[1].Digest()
	blob := filepath.Join(badLayout, "blobs", ld.Algorithm, ld.Hex)
	b, _ := os.ReadFile(blob)
	b[len(b)/2] ^= 0xff
	os.WriteFile(blob, b, 0o644)

	for _, c := range []struct {
		what, ref, arch string
		want            error
		say             []string
	}{
		{"bad reference", "Not A Reference!", "amd64", nil, []string{"Not A Reference!", "not a file, layout directory or registry reference"}},
		{"unreachable registry", "127.0.0.1:1/x/y:z", "amd64", oci.ErrRegistry, []string{"cannot reach 127.0.0.1:1", "connection refused"}},
		{"missing tag", reg.Host + "/test/single:nope", "amd64", oci.ErrRegistry, []string{reg.Host, "has no", "nope"}},
		{"missing repository", reg.Host + "/test/none:v1", "amd64", oci.ErrRegistry, []string{"has no"}},
		{"no image for the arch in an index", idxRef, "arm64", oci.ErrNoPlatform, []string{"linux/arm64", "linux/amd64"}},
		{"single image of another arch", singleRef, "arm64", oci.ErrNoPlatform, []string{"linux/arm64", "linux/amd64"}},
		{"layer digest mismatch", badLayout, "amd64", oci.ErrLayer, []string{"layer 2 of 3", "digest mismatch", ld.String()}},
		{"entry escaping the root", escRef, "amd64", oci.ErrEscape, []string{"layer 1 of 1", "../../etc/evil"}},
		{"not an image file", "/etc/passwd", "amd64", nil, []string{"/etc/passwd", "neither a layout directory nor an image archive"}},
	} {
		dir := t.TempDir()
		_, err := oci.Prepare(ctx, c.ref, oci.Options{Arch: c.arch, Dir: dir})
		if err == nil || (c.want != nil && !errors.Is(err, c.want)) || !strings.HasPrefix(err.Error(), "image "+c.ref+": ") {
			t.Errorf("%s: %v, want an error naming the image and matching %v", c.what, err, c.want)
			continue
		}
		for _, s := range c.say {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%s: %q does not say %q", c.what, err, s)
			}
		}
		t.Logf("%s: %v", c.what, err)
		noEntries(t, dir)
	}
}

// TestPrepareDiskFull converts onto a 1 MiB tmpfs: the error names the
// image and ENOSPC, and nothing is left in the cache.
func TestPrepareDiskFull(t *testing.T) {
	needSqfstar(t)
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v %s", err, out)
	}
	defer exec.Command("umount", dir).Run()
	big := make([]byte, 3<<20)
	rand.Read(big)
	l, _ := ocitest.Layer([]ocitest.File{{Name: "big", Mode: 0o644, Body: big}}, "none")
	img, _ := ocitest.Image("amd64", v1.Config{}, l)
	layoutDir := filepath.Join(t.TempDir(), "layout")
	if err := ocitest.WriteLayout(layoutDir, img); err != nil {
		t.Fatal(err)
	}
	_, err := oci.Prepare(context.Background(), layoutDir, oci.Options{Arch: "amd64", Dir: dir})
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), layoutDir) {
		t.Errorf("got %v, want ENOSPC naming the image", err)
	}
	t.Logf("full disk: %v", err)
	noEntries(t, dir)
}
