package oci

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/supermachine-go/supermachine-kernel/internal/atomicfile"
)

// ConverterVersion names how an image becomes a root image (the
// flattening rules, the tar form, the squashfs settings). It is part of
// every cache path: change it when the bytes of a root image would
// change.
const ConverterVersion = "v1"

// Errors the callers test for with errors.Is.
var (
	// ErrNotCached: the image is not in the cache and Pull is PullNever.
	ErrNotCached = errors.New("not in the image cache (pull policy never)")
	// ErrNoPlatform: the image or index has nothing for the guest arch.
	ErrNoPlatform = errors.New("no image for the guest arch")
	// ErrRegistry: the registry could not be reached or refused a
	// request (the message names the host).
	ErrRegistry = errors.New("registry request failed")
)

// Pull is when an image is fetched from its registry.
type Pull string

const (
	// PullMissing fetches only what the cache lacks: a tag already
	// resolved once, or a digest already converted, needs no network.
	PullMissing Pull = "missing"
	// PullAlways resolves a tag again (one manifest request) and
	// converts only if its digest is new.
	PullAlways Pull = "always"
	// PullNever uses the cache only.
	PullNever Pull = "never"
)

// ParsePull parses a pull policy: missing, always or never.
func ParsePull(s string) (Pull, error) {
	switch p := Pull(s); p {
	case PullMissing, PullAlways, PullNever:
		return p, nil
	}
	return "", fmt.Errorf("pull policy %q: want missing, always or never", s)
}

// Options say where an image's root goes and how it is fetched.
type Options struct {
	// Arch is the guest's GOARCH (amd64, arm64): an index gives the
	// linux/Arch image, and a single image must be of that arch.
	Arch string
	// Dir is the image cache directory (created if needed).
	Dir string
	// Pull is the pull policy; empty means PullMissing.
	Pull Pull
	// Keychain authenticates to registries; nil means the Docker
	// keychain (~/.docker/config.json, credential helpers).
	Keychain authn.Keychain
	// Transport, if not nil, carries the registry requests.
	Transport http.RoundTripper
	// Progress, if not nil, is told what is being done.
	Progress func(msg string)
}

// Image is an image made ready to boot.
type Image struct {
	Ref    string // the reference as given
	Digest string // the cache key: the platform manifest's digest (docker save archives: the config's)
	Arch   string
	Root   string // the squashfs root image, in the cache
	Config Config
	// Converted is true when this call converted the image, false when
	// the cache had it.
	Converted bool
}

// Config is what an image's configuration says about running it.
type Config struct {
	Env        []string `json:"env,omitempty"`
	WorkingDir string   `json:"working_dir,omitempty"`
	User       string   `json:"user,omitempty"`
	Entrypoint []string `json:"entrypoint,omitempty"`
	Cmd        []string `json:"cmd,omitempty"`
}

// Argv is the command to run: args when given (they replace Entrypoint
// and Cmd, so that a command given by hand means the same with or
// without an image), else Entrypoint followed by Cmd, as docker run runs
// an image.
func (c Config) Argv(args []string) []string {
	if len(args) > 0 {
		return args
	}
	return append(slices.Clone(c.Entrypoint), c.Cmd...)
}

// entry is what the cache keeps beside a root image (image.json).
type entry struct {
	Ref       string `json:"ref"`
	Digest    string `json:"digest"`
	Arch      string `json:"arch"`
	Converter string `json:"converter"`
	Config    Config `json:"config"`
}

// Prepare returns the root image of ref for o.Arch, from the cache or
// converted into it. ref is a registry reference (name[:tag|@digest]), or
// the path of an OCI image layout directory, an OCI archive (a tar of a
// layout) or a docker save archive.
//
// Prepares of one image, in this process or others, convert it once: the
// first converts, the others wait for it (until ctx ends) and use its
// root. Prepare first sweeps the cache: it removes what writers that died
// left there (a conversion cut short, an archive half extracted, an
// entry half removed), which no live process holds a lock on.
//
// Every error names ref and what failed.
func Prepare(ctx context.Context, ref string, o Options) (*Image, error) {
	im, err := prepare(ctx, ref, o)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", ref, err)
	}
	return im, nil
}

func prepare(ctx context.Context, ref string, o Options) (*Image, error) {
	if o.Arch != "amd64" && o.Arch != "arm64" {
		return nil, fmt.Errorf("guest arch %q: want amd64 or arm64", o.Arch)
	}
	if o.Dir == "" {
		return nil, errors.New("no image cache directory")
	}
	if o.Pull == "" {
		o.Pull = PullMissing
	}
	if _, err := ParsePull(string(o.Pull)); err != nil {
		return nil, err
	}
	sweep(o.Dir)
	if fi, err := os.Stat(ref); err == nil {
		return prepareLocal(ctx, ref, fi, o)
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("not a file, layout directory or registry reference: %w", err)
	}
	return prepareRemote(ctx, ref, r, o)
}

func (o Options) progress(format string, a ...any) {
	if o.Progress != nil {
		o.Progress(fmt.Sprintf(format, a...))
	}
}

// prepareRemote resolves a registry reference: from the cache when the
// policy allows, else with one manifest request, converting only what
// the cache lacks.
func prepareRemote(ctx context.Context, given string, r name.Reference, o Options) (*Image, error) {
	tagKey := "tag " + r.Name()
	top := ""
	_, byDigest := r.(name.Digest)
	if byDigest {
		top = r.(name.Digest).DigestStr()
	} else if o.Pull != PullAlways {
		top = readRef(o.Dir, tagKey)
	}
	// A digest cannot move: even PullAlways takes it from the cache.
	if top != "" && (o.Pull != PullAlways || byDigest) {
		if im := lookup(o.Dir, top, o.Arch); im != nil {
			return im, nil
		}
		if pd := readRef(o.Dir, platformKey(top, o.Arch)); pd != "" {
			if im := lookup(o.Dir, pd, o.Arch); im != nil {
				return im, nil
			}
		}
	}
	if o.Pull == PullNever {
		return nil, ErrNotCached
	}
	kc := o.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(kc)}
	if o.Transport != nil {
		opts = append(opts, remote.WithTransport(o.Transport))
	}
	o.progress("resolving %s", r.Name())
	desc, err := remote.Get(r, opts...)
	if err != nil {
		return nil, registryError(r, err)
	}
	top = desc.Digest.String()
	var img v1.Image
	var pd string
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			return nil, registryError(r, err)
		}
		d, owner, err := choose(idx, o.Arch)
		if err != nil {
			return nil, err
		}
		pd = d.String()
		if im := lookup(o.Dir, pd, o.Arch); im != nil {
			recordRefs(o.Dir, r, tagKey, top, pd, o.Arch)
			return im, nil
		}
		if img, err = owner.Image(d); err != nil {
			return nil, registryError(r, err)
		}
	} else {
		pd = top
		if im := lookup(o.Dir, pd, o.Arch); im != nil {
			recordRefs(o.Dir, r, tagKey, top, pd, o.Arch)
			return im, nil
		}
		if img, err = desc.Image(); err != nil {
			return nil, registryError(r, err)
		}
		if err := checkArch(img, o.Arch); err != nil {
			return nil, err
		}
	}
	im, err := convertOnce(ctx, given, img, pd, false, o)
	if err != nil {
		return nil, err
	}
	recordRefs(o.Dir, r, tagKey, top, pd, o.Arch)
	return im, nil
}

func recordRefs(dir string, r name.Reference, tagKey, top, platform, arch string) {
	if _, ok := r.(name.Tag); ok {
		writeRef(dir, tagKey, top)
	}
	if top != platform {
		writeRef(dir, platformKey(top, arch), platform)
	}
}

func platformKey(digest, arch string) string { return "platform " + digest + " linux/" + arch }

// registryError names the registry host and what failed.
func registryError(r name.Reference, err error) error {
	host := r.Context().RegistryStr()
	var te *transport.Error
	if errors.As(err, &te) {
		if te.StatusCode == http.StatusNotFound {
			return fmt.Errorf("%w: %s has no %s: %w", ErrRegistry, host, r.Name(), err)
		}
		return fmt.Errorf("%w: %s answered %d: %w", ErrRegistry, host, te.StatusCode, err)
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("%w: cannot reach %s: %w", ErrRegistry, host, err)
	}
	return fmt.Errorf("%w: %s: %w", ErrRegistry, host, err)
}

// choose picks the linux image of arch from an index (nested indexes
// included), and returns its digest and the index that lists it.
func choose(idx v1.ImageIndex, arch string) (v1.Hash, v1.ImageIndex, error) {
	m, err := idx.IndexManifest()
	if err != nil {
		return v1.Hash{}, nil, err
	}
	var seen []string
	for _, d := range m.Manifests {
		switch {
		case d.MediaType.IsIndex():
			child, err := idx.ImageIndex(d.Digest)
			if err != nil {
				return v1.Hash{}, nil, err
			}
			if h, owner, err := choose(child, arch); err == nil {
				return h, owner, nil
			} else if !errors.Is(err, ErrNoPlatform) {
				return v1.Hash{}, nil, err
			} else {
				seen = append(seen, strings.TrimPrefix(err.Error(), ErrNoPlatform.Error()+" (linux/"+arch+"): the index has "))
			}
		case d.MediaType.IsImage():
			if d.Platform == nil {
				// Layouts often leave the platform out: the
				// image's config says it.
				img, err := idx.Image(d.Digest)
				if err != nil {
					return v1.Hash{}, nil, err
				}
				if err := checkArch(img, arch); err == nil {
					return d.Digest, idx, nil
				} else if !errors.Is(err, ErrNoPlatform) {
					return v1.Hash{}, nil, err
				}
				seen = append(seen, "(an image of another arch)")
				continue
			}
			p := d.Platform
			if p.OS == "linux" && p.Architecture == arch && (arch != "arm64" || p.Variant == "" || p.Variant == "v8") {
				return d.Digest, idx, nil
			}
			seen = append(seen, p.String())
		}
	}
	if len(seen) == 0 {
		return v1.Hash{}, nil, fmt.Errorf("%w (linux/%s): the index lists no image", ErrNoPlatform, arch)
	}
	return v1.Hash{}, nil, fmt.Errorf("%w (linux/%s): the index has %s", ErrNoPlatform, arch, strings.Join(seen, ", "))
}

// checkArch refuses a single image whose config names another platform.
func checkArch(img v1.Image, arch string) error {
	cf, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("reading the image config: %w", err)
	}
	if (cf.OS != "" && cf.OS != "linux") || (cf.Architecture != "" && cf.Architecture != arch) {
		return fmt.Errorf("%w (linux/%s): the image is for %s/%s", ErrNoPlatform, arch, cf.OS, cf.Architecture)
	}
	return nil
}

// prepareLocal reads an image from a layout directory, an OCI archive or
// a docker save archive.
func prepareLocal(ctx context.Context, path string, fi fs.FileInfo, o Options) (*Image, error) {
	if fi.IsDir() {
		return prepareLayout(ctx, path, path, o)
	}
	names, err := tarNames(path)
	if err != nil {
		return nil, fmt.Errorf("neither a layout directory nor an image archive: %w", err)
	}
	switch {
	case names["oci-layout"] && names["index.json"]:
		if err := os.MkdirAll(o.Dir, 0o755); err != nil {
			return nil, err
		}
		tmp, l, err := mkdirLocked(o.Dir, archivePrefix, true)
		if err != nil {
			return nil, fmt.Errorf("image cache: %w", err)
		}
		defer l.unlock()
		defer os.RemoveAll(tmp)
		if err := extractLayout(ctx, path, tmp); err != nil {
			return nil, err
		}
		return prepareLayout(ctx, path, tmp, o)
	case names["manifest.json"]:
		img, err := tarball.ImageFromPath(path, nil)
		if err != nil {
			return nil, fmt.Errorf("docker archive: %w", err)
		}
		if err := checkArch(img, o.Arch); err != nil {
			return nil, err
		}
		cd, err := img.ConfigName()
		if err != nil {
			return nil, err
		}
		if im := lookup(o.Dir, cd.String(), o.Arch); im != nil {
			return im, nil
		}
		return convertOnce(ctx, path, img, cd.String(), true, o)
	}
	return nil, errors.New("an archive with neither oci-layout and index.json (OCI) nor manifest.json (docker save)")
}

func prepareLayout(ctx context.Context, given, dir string, o Options) (*Image, error) {
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("OCI layout: %w", err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return nil, fmt.Errorf("OCI layout: %w", err)
	}
	d, owner, err := choose(idx, o.Arch)
	if err != nil {
		return nil, err
	}
	if im := lookup(o.Dir, d.String(), o.Arch); im != nil {
		return im, nil
	}
	img, err := owner.Image(d)
	if err != nil {
		return nil, err
	}
	return convertOnce(ctx, given, img, d.String(), false, o)
}

// tarNames lists the top-level names of a tar file that matter to tell
// archives apart.
func tarNames(path string) (map[string]bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names := map[string]bool{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names, nil
		}
		if err != nil {
			return nil, err
		}
		names[strings.TrimPrefix(h.Name, "./")] = true
	}
}

// extractLayout writes the layout files of an OCI archive into dir.
func extractLayout(ctx context.Context, archive, dir string) error {
	f, err := os.Open(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("OCI archive: %w", err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		n := strings.TrimPrefix(h.Name, "./")
		if h.Typeflag != tar.TypeReg || !(n == "oci-layout" || n == "index.json" || isBlobName(n)) {
			continue
		}
		dst := filepath.Join(dir, filepath.FromSlash(n))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		out, err := os.Create(dst)
		if err != nil {
			return err
		}
		_, err = io.Copy(out, tr)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("OCI archive: %s: %w", n, err)
		}
	}
}

// isBlobName matches blobs/<alg>/<hex> and nothing that could leave dir.
func isBlobName(n string) bool {
	p := strings.Split(n, "/")
	return len(p) == 3 && p[0] == "blobs" && p[1] != "" && p[2] != "" &&
		!strings.ContainsAny(p[1]+p[2], `\.`)
}

// entryDir is where the cache keeps the root of digest.
func entryDir(dir, digest string) string {
	return filepath.Join(dir, ConverterVersion, strings.ReplaceAll(digest, ":", "-"))
}

// lookup returns the cached image of digest, or nil. The image.json is
// committed after the root image, so its presence means both are whole.
func lookup(dir, digest, arch string) *Image {
	ed := entryDir(dir, digest)
	b, err := os.ReadFile(filepath.Join(ed, "image.json"))
	if err != nil {
		return nil
	}
	var e entry
	if json.Unmarshal(b, &e) != nil || e.Arch != arch {
		return nil
	}
	root := filepath.Join(ed, "root.squashfs")
	if fi, err := os.Stat(root); err != nil || !fi.Mode().IsRegular() {
		return nil
	}
	return &Image{Ref: e.Ref, Digest: e.Digest, Arch: e.Arch, Root: root, Config: e.Config}
}

// refPath is the small file recording what a tag or an index digest
// resolved to.
func refPath(dir, key string) string {
	sum := sha256.Sum256([]byte(key))
	return filepath.Join(dir, "refs", hex.EncodeToString(sum[:16]))
}

// readRef returns the digest recorded for key, or "".
func readRef(dir, key string) string {
	b, err := os.ReadFile(refPath(dir, key))
	if err != nil {
		return ""
	}
	k, d, ok := strings.Cut(strings.TrimSpace(string(b)), "\n")
	if !ok || k != key {
		return ""
	}
	return d
}

// writeRef records key → digest; a failure only costs a request later.
func writeRef(dir, key, digest string) {
	p := refPath(dir, key)
	if os.MkdirAll(filepath.Dir(p), 0o755) == nil {
		atomicfile.WriteFile(context.Background(), p, []byte(key+"\n"+digest+"\n"), 0o644)
	}
}
