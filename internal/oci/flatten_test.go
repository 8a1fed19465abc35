package oci

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// e is a layer entry in the tests: a tar header and content.
type e struct {
	name, link string
	typ        byte
	mode       int64
	uid, gid   int
	body       string
	xattrs     map[string]string
	major      int64
	minor      int64
	mtime      int64
}

func layerTar(t testing.TB, entries ...e) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, x := range entries {
		typ := x.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		mode := x.mode
		if mode == 0 {
			mode = 0o644
			if typ == tar.TypeDir {
				mode = 0o755
			}
		}
		h := &tar.Header{Name: x.name, Linkname: x.link, Typeflag: typ, Mode: mode, Uid: x.uid, Gid: x.gid,
			Size: int64(len(x.body)), Devmajor: x.major, Devminor: x.minor, ModTime: time.Unix(x.mtime, 0), Format: tar.FormatPAX}
		if typ != tar.TypeReg {
			h.Size = 0
		}
		for k, v := range x.xattrs {
			if h.PAXRecords == nil {
				h.PAXRecords = map[string]string{}
			}
			h.PAXRecords["SCHILY.xattr."+k] = v
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, x.body)
	}
	tw.Close()
	return buf.Bytes()
}

// flatten applies layers and returns the listing of the tree's tar form.
func flatten(t testing.TB, layers ...[]byte) (map[string]string, error) {
	t.Helper()
	spool, err := os.CreateTemp(t.TempDir(), "spool")
	if err != nil {
		t.Fatal(err)
	}
	defer spool.Close()
	tr := NewTree(spool)
	for _, l := range layers {
		if err := tr.Apply(bytes.NewReader(l)); err != nil {
			return nil, err
		}
	}
	var out bytes.Buffer
	if err := tr.WriteTar(&out); err != nil {
		return nil, err
	}
	return listTar(t, out.Bytes()), nil
}

// listTar describes each entry of a tar stream in one line: type, mode,
// owner, mtime, then size and content hash, link target or device, and
// the extended attributes.
func listTar(t testing.TB, b []byte) map[string]string {
	t.Helper()
	m := map[string]string{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return m
		}
		if err != nil {
			t.Fatal(err)
		}
		s := fmt.Sprintf("%c %o %d:%d", h.Typeflag, h.Mode, h.Uid, h.Gid)
		switch h.Typeflag {
		case tar.TypeReg:
			body, _ := io.ReadAll(tr)
			sum := sha256.Sum256(body)
			s += fmt.Sprintf(" %d %s", len(body), hex.EncodeToString(sum[:4]))
		case tar.TypeSymlink, tar.TypeLink:
			s += " -> " + h.Linkname
		case tar.TypeChar, tar.TypeBlock:
			s += fmt.Sprintf(" %d,%d", h.Devmajor, h.Devminor)
		}
		var xs []string
		for k, v := range h.PAXRecords {
			if n, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
				xs = append(xs, n+"="+hex.EncodeToString([]byte(v)))
			}
		}
		slices.Sort(xs)
		if len(xs) > 0 {
			s += " " + strings.Join(xs, ",")
		}
		if h.ModTime.Unix() != 0 {
			s += fmt.Sprintf(" t=%d", h.ModTime.Unix())
		}
		m[strings.TrimSuffix(h.Name, "/")] = s
	}
}

func sum4(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:4])
}

func reg(body string, mode int64) string {
	return fmt.Sprintf("0 %o 0:0 %d %s", mode, len(body), sum4(body))
}

const dir755 = "5 755 0:0"

func checkTree(t *testing.T, got, want map[string]string) {
	t.Helper()
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if got[k] != want[k] {
			t.Errorf("%s: got %q, want %q", k, got[k], want[k])
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected %s: %q", k, got[k])
		}
	}
}

var capability = "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00" // cap_net_bind_service+ep

func TestFlattenKeepsEveryKindOfEntry(t *testing.T) {
	got, err := flatten(t, layerTar(t,
		e{name: "bin/", typ: tar.TypeDir, mode: 0o750, uid: 3000000, gid: 7, mtime: 1700000000},
		e{name: "bin/ping", body: "ping", mode: 0o4755, uid: 5, gid: 6, mtime: 1700000001, xattrs: map[string]string{"security.capability": capability, "user.note": "x"}},
		e{name: "bin/ping2", typ: tar.TypeLink, link: "bin/ping"},
		e{name: "bin/sh", typ: tar.TypeSymlink, link: "/bin/busybox", mode: 0o777},
		e{name: "dev/null", typ: tar.TypeChar, mode: 0o666, major: 1, minor: 3},
		e{name: "dev/sda", typ: tar.TypeBlock, mode: 0o660, major: 8, gid: 6},
		e{name: "run/fifo", typ: tar.TypeFifo, mode: 0o600},
		e{name: "/abs/name", body: "abs"},
		e{name: "./dot/./x/../name", body: "dot"},
		e{name: "tmp/", typ: tar.TypeDir, mode: 0o1777},
		e{name: "x", body: "acl", xattrs: map[string]string{"system.posix_acl_access": "?", "trusted.overlay.opaque": "y", "trusted.ok": "1"}},
	))
	if err != nil {
		t.Fatal(err)
	}
	caps := "security.capability=" + hex.EncodeToString([]byte(capability)) + ",user.note=78"
	checkTree(t, got, map[string]string{
		"bin":       "5 750 3000000:7 t=1700000000",
		"bin/ping":  "0 4755 5:6 4 " + sum4("ping") + " " + caps + " t=1700000001",
		"bin/ping2": "1 4755 5:6 -> bin/ping t=1700000001",
		"bin/sh":    "2 777 0:0 -> /bin/busybox",
		"dev":       dir755,
		"dev/null":  "3 666 0:0 1,3",
		"dev/sda":   "4 660 0:6 8,0",
		"run":       dir755,
		"run/fifo":  "6 600 0:0",
		"abs":       dir755,
		"abs/name":  reg("abs", 0o644),
		"dot":       dir755,
		"dot/name":  reg("dot", 0o644),
		"tmp":       "5 1777 0:0",
		"x":         reg("acl", 0o644) + " trusted.ok=31",
	})
}

func TestFlattenWhiteouts(t *testing.T) {
	base := layerTar(t,
		e{name: "etc/", typ: tar.TypeDir},
		e{name: "etc/a", body: "a1"},
		e{name: "etc/b", body: "b1"},
		e{name: "etc/sub/c", body: "c1"},
		e{name: "opq/", typ: tar.TypeDir, mode: 0o700},
		e{name: "opq/old", body: "old"},
		e{name: "opq/deep/old2", body: "old2"},
		e{name: "gone/x/y", body: "y"},
		e{name: "keep/z", body: "z"},
		e{name: "f2d", body: "file"},
		e{name: "d2f/inner", body: "inner"},
		e{name: "meta/", typ: tar.TypeDir, mode: 0o755},
		e{name: "meta/child", body: "child"},
	)
	top := layerTar(t,
		e{name: "etc/.wh.a"},              // a file from below: gone
		e{name: "etc/b", body: "b2"},      // replaced
		e{name: "etc/.wh.b"},              // same layer: b2 stays
		e{name: "etc/.wh.sub"},            // a directory: its subtree goes
		e{name: "etc/sub/new", body: "n"}, // and is made again by this layer
		e{name: "opq/new", body: "new"},   // before the marker: stays
		e{name: "opq/.wh..wh..opq"},
		e{name: "opq/deep/new2", body: "new2"},
		e{name: ".wh.gone"},
		e{name: ".wh.missing"},       // nothing to hide
		e{name: "keep/.wh..wh.plnk"}, // AUFS bookkeeping: ignored
		e{name: "f2d/", typ: tar.TypeDir, mode: 0o711},
		e{name: "d2f", body: "now a file"},
		e{name: "meta/", typ: tar.TypeDir, mode: 0o700, uid: 9},
	)
	got, err := flatten(t, base, top)
	if err != nil {
		t.Fatal(err)
	}
	checkTree(t, got, map[string]string{
		"etc":           dir755,
		"etc/b":         reg("b2", 0o644),
		"etc/sub":       dir755,
		"etc/sub/new":   reg("n", 0o644),
		"opq":           "5 700 0:0",
		"opq/new":       reg("new", 0o644),
		"opq/deep":      dir755,
		"opq/deep/new2": reg("new2", 0o644),
		"keep":          dir755,
		"keep/z":        reg("z", 0o644),
		"f2d":           "5 711 0:0",
		"d2f":           reg("now a file", 0o644),
		"meta":          "5 700 9:0",
		"meta/child":    reg("child", 0o644),
	})
}

func TestFlattenHardLinks(t *testing.T) {
	l1 := layerTar(t,
		e{name: "a", body: "one", mode: 0o755},
		e{name: "b", typ: tar.TypeLink, link: "a"},
		e{name: "c", body: "cee"},
	)
	l2 := layerTar(t,
		e{name: "a", body: "two"},                   // b keeps "one"
		e{name: "d", typ: tar.TypeLink, link: "/c"}, // to a lower layer's file
		e{name: ".wh.c"},                            // d keeps the content
		e{name: "lnk", typ: tar.TypeSymlink, link: "sub"},
		e{name: "sub/f", body: "f"},
		e{name: "g", typ: tar.TypeLink, link: "lnk/f"}, // through a symbolic link
	)
	got, err := flatten(t, l1, l2)
	if err != nil {
		t.Fatal(err)
	}
	checkTree(t, got, map[string]string{
		"a":     reg("two", 0o644),
		"b":     reg("one", 0o755),
		"d":     reg("cee", 0o644),
		"lnk":   "2 644 0:0 -> sub",
		"g":     reg("f", 0o644),
		"sub":   dir755,
		"sub/f": "1 644 0:0 -> g",
	})
}

func TestFlattenStaysInsideTheRoot(t *testing.T) {
	l1 := layerTar(t,
		e{name: "etc/", typ: tar.TypeDir},
		e{name: "abs", typ: tar.TypeSymlink, link: "/etc"},
		e{name: "up", typ: tar.TypeSymlink, link: "../../../../tmp"},
		e{name: "loop", typ: tar.TypeSymlink, link: "loop"},
	)
	got, err := flatten(t, l1, layerTar(t,
		e{name: "abs/passwd", body: "p"},
		e{name: "up/x", body: "x"},
	))
	if err != nil {
		t.Fatal(err)
	}
	checkTree(t, got, map[string]string{
		"etc":        dir755,
		"etc/passwd": reg("p", 0o644),
		"abs":        "2 644 0:0 -> /etc",
		"up":         "2 644 0:0 -> ../../../../tmp",
		"loop":       "2 644 0:0 -> loop",
		"tmp":        dir755,
		"tmp/x":      reg("x", 0o644),
	})

	for _, c := range []struct {
		what  string
		entry e
		want  error
	}{
		{"dot-dot name", e{name: "../evil", body: "x"}, ErrEscape},
		{"dot-dot inside", e{name: "a/../../evil", body: "x"}, ErrEscape},
		{"hard link out", e{name: "h", typ: tar.TypeLink, link: "../../etc/passwd"}, ErrEscape},
		{"hard link to nothing", e{name: "h", typ: tar.TypeLink, link: "nothing"}, ErrLayer},
		{"hard link to a directory", e{name: "h", typ: tar.TypeLink, link: "etc"}, ErrLayer},
		{"symbolic link loop", e{name: "loop/x", body: "x"}, ErrLayer},
		{"through a file", e{name: "abs/passwd/x", body: "x"}, ErrLayer},
		{"whiteout of dot-dot", e{name: "etc/.wh.."}, ErrLayer},
	} {
		_, err := flatten(t, l1, layerTar(t, e{name: "etc/passwd", body: "p"}, c.entry))
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.entry.name) {
			t.Errorf("%s: got %v, want an error naming %q matching %v", c.what, err, c.entry.name, c.want)
		}
	}
}

func TestFlattenBadTar(t *testing.T) {
	l := layerTar(t, e{name: "a", body: strings.Repeat("x", 4096)})
	if _, err := flatten(t, l[:1024]); !errors.Is(err, ErrLayer) {
		t.Errorf("truncated layer: %v, want ErrLayer", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "sock", Typeflag: tar.TypeCont})
	tw.Close()
	if _, err := flatten(t, buf.Bytes()); !errors.Is(err, ErrLayer) || !strings.Contains(err.Error(), "sock") {
		t.Errorf("unknown entry type: %v, want ErrLayer naming the entry", err)
	}
}

func TestFlattenLongSymlinkTargets(t *testing.T) {
	long := "/" + strings.Repeat("d/", 80) + "target"
	got, err := flatten(t, layerTar(t, e{name: "l", typ: tar.TypeSymlink, link: long, mode: 0o777}))
	if err != nil {
		t.Fatal(err)
	}
	if want := "2 777 0:0 -> " + long; got["l"] != want {
		t.Errorf("got %q, want %q", got["l"], want)
	}
	_, err = flatten(t, layerTar(t, e{name: "l", typ: tar.TypeSymlink, link: long, xattrs: map[string]string{"user.a": "b"}}))
	if !errors.Is(err, ErrUnsupported) {
		t.Errorf("long absolute target with xattrs: %v, want ErrUnsupported", err)
	}
}

func TestFlattenIsDeterministic(t *testing.T) {
	var outs [][]byte
	for range 2 {
		spool, _ := os.CreateTemp(t.TempDir(), "spool")
		tr := NewTree(spool)
		var entries []e
		for i := range 200 {
			entries = append(entries, e{name: fmt.Sprintf("d%d/f%d", i%7, i), body: fmt.Sprint(i)})
		}
		if err := tr.Apply(bytes.NewReader(layerTar(t, entries...))); err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if err := tr.WriteTar(&b); err != nil {
			t.Fatal(err)
		}
		spool.Close()
		outs = append(outs, b.Bytes())
	}
	if !bytes.Equal(outs[0], outs[1]) {
		t.Error("the same layer gave two different tar streams")
	}
}

func TestFlattenMoreEdges(t *testing.T) {
	l1 := layerTar(t,
		e{name: "d2s/", typ: tar.TypeDir},
		e{name: "d2s/x", body: "x"},
		e{name: "s2d", typ: tar.TypeSymlink, link: "/elsewhere", mode: 0o777},
		e{name: "later/", typ: tar.TypeDir},
		e{name: "later/t", body: "t"},
		e{name: "dangling", typ: tar.TypeSymlink, link: "/made/by/a/layer", mode: 0o777},
	)
	l2 := layerTar(t,
		e{name: "./", typ: tar.TypeDir, mode: 0o700, uid: 1, gid: 2, mtime: 99},
		e{name: "d2s", typ: tar.TypeSymlink, link: "target", mode: 0o777}, // a symlink over a directory
		e{name: "s2d/", typ: tar.TypeDir, mode: 0o711},                    // a directory over a symlink
		e{name: ".wh.w"},        // a whiteout before the entry
		e{name: "w", body: "w"}, // of the same layer: stays
		e{name: "h", typ: tar.TypeLink, link: "later/t"},
		e{name: "dangling/file", body: "f"}, // through a dangling absolute link: made inside the root
		e{name: "times/old", body: "o", mtime: -5},
		e{name: "times/far", body: "f", mtime: 1 << 33},
	)
	l3 := layerTar(t,
		e{name: ".wh.later"}, // h keeps the content of later/t
	)
	var lib bytes.Buffer
	tw := tar.NewWriter(&lib)
	tw.WriteHeader(&tar.Header{Name: "lib", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1, Format: tar.FormatPAX,
		PAXRecords: map[string]string{"LIBARCHIVE.xattr.user.a%20b": "dmFsdWU="}})
	tw.Write([]byte("l"))
	tw.Close()
	spool, _ := os.CreateTemp(t.TempDir(), "spool")
	defer spool.Close()
	tr := NewTree(spool)
	for _, l := range [][]byte{l1, l2, l3, lib.Bytes()} {
		if err := tr.Apply(bytes.NewReader(l)); err != nil {
			t.Fatal(err)
		}
	}
	if r := tr.Root(); r != (RootMeta{Mode: 0o700, UID: 1, GID: 2}) {
		t.Errorf("root: %+v, want the ./ entry's mode and owner", r)
	}
	if n := tr.NewestTime(); n != 1<<32-1 {
		t.Errorf("newest time %d, want the clamped 2^32-1", n)
	}
	var out bytes.Buffer
	if err := tr.WriteTar(&out); err != nil {
		t.Fatal(err)
	}
	checkTree(t, listTar(t, out.Bytes()), map[string]string{
		"d2s":                  "2 777 0:0 -> target",
		"s2d":                  "5 711 0:0",
		"w":                    reg("w", 0o644),
		"h":                    reg("t", 0o644),
		"dangling":             "2 777 0:0 -> /made/by/a/layer",
		"made":                 dir755,
		"made/by":              dir755,
		"made/by/a":            dir755,
		"made/by/a/layer":      dir755,
		"made/by/a/layer/file": reg("f", 0o644),
		"times":                dir755,
		"times/old":            reg("o", 0o644),
		"times/far":            reg("f", 0o644) + " t=4294967295",
		"lib":                  reg("l", 0o644) + " user.a b=" + hex.EncodeToString([]byte("value")),
	})
}

// FuzzFlatten feeds arbitrary bytes as a layer (after a fixed one): the
// flattener returns an error or a tree whose tar form reads back, with
// every name inside the root.
func FuzzFlatten(f *testing.F) {
	base := layerTar(f, e{name: "etc/", typ: tar.TypeDir}, e{name: "etc/passwd", body: "p"},
		e{name: "abs", typ: tar.TypeSymlink, link: "/etc"}, e{name: "up", typ: tar.TypeSymlink, link: "../.."})
	f.Add(layerTar(f, e{name: "abs/x", body: "x"}, e{name: "up/y", body: "y"}, e{name: "etc/.wh.passwd"}))
	f.Add(layerTar(f, e{name: "h", typ: tar.TypeLink, link: "abs/passwd"}, e{name: ".wh..wh..opq"}))
	f.Add(layerTar(f, e{name: "../x", body: "x"}))
	f.Fuzz(func(t *testing.T, layer []byte) {
		// A sparse entry expands to its full size in the spool: skip
		// the inputs that would write more than a megabyte.
		pre := tar.NewReader(bytes.NewReader(layer))
		for {
			h, err := pre.Next()
			if err != nil {
				break
			}
			if h.Size > 1<<20 {
				return
			}
		}
		spool, err := os.CreateTemp(t.TempDir(), "spool")
		if err != nil {
			t.Fatal(err)
		}
		defer spool.Close()
		tr := NewTree(spool)
		if err := tr.Apply(bytes.NewReader(base)); err != nil {
			t.Fatal(err)
		}
		if tr.Apply(bytes.NewReader(layer)) != nil {
			return
		}
		var out bytes.Buffer
		if err := tr.WriteTar(&out); err != nil {
			if errors.Is(err, ErrUnsupported) {
				return
			}
			t.Fatal(err)
		}
		r := tar.NewReader(&out)
		for {
			h, err := r.Next()
			if err == io.EOF {
				return
			}
			if err != nil {
				t.Fatalf("the tree's tar does not read back: %v", err)
			}
			if n := strings.TrimSuffix(h.Name, "/"); n == "" || strings.HasPrefix(n, "/") || slices.Contains(strings.Split(n, "/"), "..") {
				t.Fatalf("entry %q outside the root", h.Name)
			}
		}
	})
}
