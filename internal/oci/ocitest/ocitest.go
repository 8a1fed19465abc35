// Package ocitest makes container images for tests: layers from file
// lists, single-arch images and multi-arch indexes, an in-process
// registry that counts requests, OCI layouts, OCI archives and docker
// save archives. Nothing touches the network.
package ocitest

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/compression"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/supermachine-go/supermachine-kernel/internal/oci"
	"github.com/supermachine-go/supermachine-kernel/internal/oci/ocitest/listing"
)

// File is a layer entry.
type File struct {
	Name         string
	Type         byte // tar type flag; 0 means a regular file
	Mode         int64
	UID, GID     int
	Body         []byte
	Link         string // symbolic link target or hard link source
	Major, Minor int64
	Xattrs       map[string]string
	MTime        int64
}

// Tar returns files as a tar stream.
func Tar(files []File) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		typ := f.Type
		if typ == 0 {
			typ = tar.TypeReg
		}
		h := &tar.Header{Name: f.Name, Typeflag: typ, Mode: f.Mode, Uid: f.UID, Gid: f.GID, Linkname: f.Link,
			Devmajor: f.Major, Devminor: f.Minor, ModTime: time.Unix(f.MTime, 0), Format: tar.FormatPAX}
		if typ == tar.TypeReg {
			h.Size = int64(len(f.Body))
		}
		for k, v := range f.Xattrs {
			if h.PAXRecords == nil {
				h.PAXRecords = map[string]string{}
			}
			h.PAXRecords["SCHILY.xattr."+k] = v
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("%s: %w", f.Name, err)
		}
		if _, err := tw.Write(f.Body); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Layer makes a layer of files compressed with comp: "gzip", "zstd" or
// "none".
func Layer(files []File, comp string) (v1.Layer, error) {
	b, err := Tar(files)
	if err != nil {
		return nil, err
	}
	switch comp {
	case "none":
		return static.NewLayer(b, types.OCIUncompressedLayer), nil
	case "gzip":
		return tarball.LayerFromOpener(opener(b), tarball.WithCompressedCaching)
	case "zstd":
		return tarball.LayerFromOpener(opener(b), tarball.WithCompression(compression.ZStd), tarball.WithMediaType(types.OCILayerZStd), tarball.WithCompressedCaching)
	}
	return nil, fmt.Errorf("compression %q: want gzip, zstd or none", comp)
}

func opener(b []byte) tarball.Opener {
	return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}

// Image makes an OCI image for linux/arch from layers, with cfg as its
// run settings.
func Image(arch string, cfg v1.Config, layers ...v1.Layer) (v1.Image, error) {
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	img, err := mutate.AppendLayers(base, layers...)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Config = "linux", arch, cfg
	return mutate.ConfigFile(img, cf)
}

// Index makes an OCI index of images, each described with its platform.
func Index(imgs ...v1.Image) (v1.ImageIndex, error) {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, img := range imgs {
		cf, err := img.ConfigFile()
		if err != nil {
			return nil, err
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{
			Platform: &v1.Platform{OS: cf.OS, Architecture: cf.Architecture}}})
	}
	return idx, nil
}

// Registry is an in-process registry on 127.0.0.1 that counts the
// requests it serves.
type Registry struct {
	Host   string // host:port
	server *httptest.Server
	mu     sync.Mutex
	log    []string
}

// NewRegistry starts a registry; Close stops it.
func NewRegistry() *Registry {
	r := &Registry{}
	h := registry.New(registry.Logger(nopLogger()))
	r.server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.log = append(r.log, req.Method+" "+req.URL.Path)
		r.mu.Unlock()
		h.ServeHTTP(w, req)
	}))
	r.Host = strings.TrimPrefix(r.server.URL, "http://")
	return r
}

// Close stops the registry.
func (r *Registry) Close() { r.server.Close() }

// Requests returns the requests served since the last call ("GET
// /v2/name/manifests/tag", …) and forgets them.
func (r *Registry) Requests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := r.log
	r.log = nil
	return l
}

// Push puts an image or index under repo:tag and returns the reference
// and the digest.
func (r *Registry) Push(repo, tag string, x any) (ref, digest string, err error) {
	t, err := name.NewTag(r.Host + "/" + repo + ":" + tag)
	if err != nil {
		return "", "", err
	}
	var d v1.Hash
	switch x := x.(type) {
	case v1.Image:
		err = remote.Write(t, x)
		if err == nil {
			d, err = x.Digest()
		}
	case v1.ImageIndex:
		err = remote.WriteIndex(t, x)
		if err == nil {
			d, err = x.Digest()
		}
	default:
		return "", "", fmt.Errorf("push %T: want an image or an index", x)
	}
	r.Requests()
	return t.String(), d.String(), err
}

// WriteLayout writes an OCI image layout holding x (an image or an index)
// into dir.
func WriteLayout(dir string, x any) error {
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	switch x := x.(type) {
	case v1.Image:
		return p.AppendImage(x)
	case v1.ImageIndex:
		return p.AppendIndex(x)
	}
	return fmt.Errorf("layout of %T: want an image or an index", x)
}

// WriteOCIArchive writes an OCI archive (a tar of a layout) holding x.
func WriteOCIArchive(path string, x any) error {
	dir, err := os.MkdirTemp("", "ocitest-layout-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := WriteLayout(dir, x); err != nil {
		return err
	}
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	defer out.Close()
	tw := tar.NewWriter(out)
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Name: filepath.ToSlash(rel), Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err = tw.Write(b)
		return err
	})
	if err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return out.Close()
}

// WriteDockerArchive writes img as docker save does, tagged tag.
func WriteDockerArchive(path, tag string, img v1.Image) error {
	t, err := name.NewTag(tag)
	if err != nil {
		return err
	}
	return tarball.WriteToFile(path, t, img)
}

// BusyboxFiles is a small root tree around a static busybox: the binary,
// links for a few applets, /etc/passwd and /etc/group with root, a user
// "app" (1000:1000) and nobody, and the usual empty directories.
func BusyboxFiles(busybox []byte) []File {
	dir := func(n string, mode int64) File {
		return File{Name: n + "/", Type: tar.TypeDir, Mode: mode, MTime: 1700000000}
	}
	fs := []File{
		dir("bin", 0o755), dir("etc", 0o755), dir("dev", 0o755), dir("proc", 0o555), dir("sys", 0o555),
		dir("run", 0o755), dir("tmp", 0o1777), dir("root", 0o700), dir("home", 0o755),
		{Name: "home/app/", Type: tar.TypeDir, Mode: 0o750, UID: 1000, GID: 1000, MTime: 1700000000},
		{Name: "bin/busybox", Mode: 0o755, Body: busybox, MTime: 1700000000},
		{Name: "etc/passwd", Mode: 0o644, MTime: 1700000000,
			Body: []byte("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n")},
		{Name: "etc/group", Mode: 0o644, MTime: 1700000000, Body: []byte("root:x:0:\napp:x:1000:\nnogroup:x:65534:\n")},
	}
	for _, a := range []string{"sh", "ls", "cat", "echo", "env", "id", "pwd", "uname", "stat", "sleep", "true", "false"} {
		fs = append(fs, File{Name: "bin/" + a, Type: tar.TypeSymlink, Link: "busybox", Mode: 0o777, MTime: 1700000000})
	}
	return fs
}

func nopLogger() *log.Logger { return log.New(io.Discard, "", 0) }

// Listing flattens layers (each a list of files) as the oci package does
// and describes the result as listing lines by path, the form lsprobe
// prints in a guest.
func Listing(layers ...[]File) (map[string]string, error) {
	spool, err := os.CreateTemp("", "ocitest-spool-")
	if err != nil {
		return nil, err
	}
	defer os.Remove(spool.Name())
	defer spool.Close()
	t := oci.NewTree(spool)
	for _, files := range layers {
		b, err := Tar(files)
		if err != nil {
			return nil, err
		}
		if err := t.Apply(bytes.NewReader(b)); err != nil {
			return nil, err
		}
	}
	var buf bytes.Buffer
	if err := t.WriteTar(&buf); err != nil {
		return nil, err
	}
	m := map[string]string{}
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return m, nil
		}
		if err != nil {
			return nil, err
		}
		e := listing.Entry{Type: h.Typeflag, Mode: h.Mode, UID: h.Uid, GID: h.Gid, Link: h.Linkname,
			Major: h.Devmajor, Minor: h.Devminor, MTime: h.ModTime.Unix()}
		if h.Typeflag == tar.TypeReg {
			if e.Content, err = io.ReadAll(tr); err != nil {
				return nil, err
			}
		}
		for k, v := range h.PAXRecords {
			if n, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
				if e.Xattrs == nil {
					e.Xattrs = map[string]string{}
				}
				e.Xattrs[n] = v
			}
		}
		m[strings.TrimSuffix(h.Name, "/")] = e.Line()
	}
}
