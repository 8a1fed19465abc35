package oci

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/supermachine-go/supermachine-kernel/internal/atomicfile"
)

// convertOnce converts img, under the lock of its cache entry, unless it
// is in the cache once the lock is taken: then another process or
// goroutine converted it while this one waited.
func convertOnce(ctx context.Context, given string, img v1.Image, digest string, uncompressed bool, o Options) (*Image, error) {
	l, err := lockEntry(ctx, o, digest)
	if err != nil {
		return nil, err
	}
	defer l.unlock()
	if im := lookup(o.Dir, digest, o.Arch); im != nil {
		return im, nil
	}
	// What is there is the leftover of a conversion that died (the
	// lock was its own), or of a hand that deleted the root.
	if l.f != nil {
		os.RemoveAll(entryDir(o.Dir, digest))
	}
	return convert(ctx, given, img, digest, uncompressed, o)
}

// convert flattens img into a root image in the cache under digest.
// uncompressed reads the layers' uncompressed form (docker save archives
// keep them so); otherwise the compressed blobs are read and checked
// against their digests.
//
// Nothing is left in the cache on failure: the contents spool is
// unlinked at once, and the root image and its image.json are temporary
// files until both are complete.
func convert(ctx context.Context, given string, img v1.Image, digest string, uncompressed bool, o Options) (*Image, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading the image config: %w", err)
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("reading the image manifest: %w", err)
	}
	if n := len(cf.RootFS.DiffIDs); n != len(layers) {
		return nil, fmt.Errorf("%w: the manifest lists %d layers, the config %d", ErrLayer, len(layers), n)
	}
	ed := entryDir(o.Dir, digest)
	if err := os.MkdirAll(ed, 0o755); err != nil {
		return nil, fmt.Errorf("image cache: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			os.Remove(ed) // only if empty: another process may have filled it
		}
	}()
	spool, err := os.CreateTemp(ed, ".spool-")
	if err != nil {
		return nil, fmt.Errorf("image cache: %w", err)
	}
	os.Remove(spool.Name()) // the open file is all it needs; a crash leaves nothing
	defer spool.Close()

	t := NewTree(spool)
	for i, l := range layers {
		o.progress("layer %d/%d", i+1, len(layers))
		if err := applyLayer(ctx, t, l, cf.RootFS.DiffIDs[i], uncompressed); err != nil {
			return nil, fmt.Errorf("layer %d of %d: %w", i+1, len(layers), err)
		}
	}
	cfg := Config{
		Env: cf.Config.Env, WorkingDir: cf.Config.WorkingDir, User: cf.Config.User,
		Entrypoint: cf.Config.Entrypoint, Cmd: cf.Config.Cmd,
	}
	meta, err := json.MarshalIndent(entry{Ref: given, Digest: digest, Arch: o.Arch, Converter: ConverterVersion, Config: cfg}, "", "  ")
	if err != nil {
		return nil, err
	}

	root := filepath.Join(ed, "root.squashfs")
	o.progress("writing the root image")
	f, err := atomicfile.Create(root, 0o644)
	if err != nil {
		return nil, fmt.Errorf("image cache: %w", err)
	}
	defer f.Cleanup()
	if err := t.WriteSquashfs(ctx, f.Name()); err != nil {
		return nil, fmt.Errorf("writing the root image: %w", err)
	}
	if _, err := f.Link(); err != nil {
		return nil, fmt.Errorf("image cache: %w", err)
	}
	if err := atomicfile.WriteFile(ctx, filepath.Join(ed, "image.json"), append(meta, '\n'), 0o644); err != nil {
		os.Remove(root)
		return nil, fmt.Errorf("image cache: %w", err)
	}
	ok = true
	return &Image{Ref: given, Digest: digest, Arch: o.Arch, Root: root, Config: cfg, Converted: true}, nil
}

// applyLayer reads one layer, checks its digests and applies it to t.
func applyLayer(ctx context.Context, t *Tree, l v1.Layer, diffID v1.Hash, uncompressed bool) error {
	var rc io.ReadCloser
	var err error
	var blob hash.Hash
	var want v1.Hash
	if uncompressed {
		rc, err = l.Uncompressed()
	} else {
		if want, err = l.Digest(); err == nil {
			rc, err = l.Compressed()
		}
	}
	if err != nil {
		return fmt.Errorf("opening: %w", err)
	}
	defer rc.Close()
	var in io.Reader = ctxReader{ctx, rc}
	if !uncompressed {
		blob = sha256.New()
		in = io.TeeReader(in, blob)
	}
	br := bufio.NewReaderSize(in, 1<<16)
	magic, _ := br.Peek(4)
	var tarStream io.Reader = br
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("%w: gzip: %w", ErrLayer, err)
		}
		defer zr.Close()
		tarStream = zr
	case bytes.Equal(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return fmt.Errorf("%w: zstd: %w", ErrLayer, err)
		}
		defer zr.Close()
		tarStream = zr
	}
	diff := sha256.New()
	tarStream = io.TeeReader(tarStream, diff)
	if err := t.Apply(tarStream); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// A corrupted blob often fails to decompress before its end:
		// its digest says why.
		if blob != nil {
			if _, derr := io.Copy(io.Discard, br); derr == nil {
				if got := "sha256:" + hex.EncodeToString(blob.Sum(nil)); got != want.String() {
					return fmt.Errorf("%w: digest mismatch: the blob is %s, the manifest says %s (%w)", ErrLayer, got, want, err)
				}
			}
		}
		return err
	}
	// The digests cover the whole stream: the tar's trailing blocks and
	// anything after them.
	if _, err := io.Copy(io.Discard, tarStream); err != nil {
		return fmt.Errorf("%w: %w", ErrLayer, err)
	}
	if _, err := io.Copy(io.Discard, br); err != nil {
		return fmt.Errorf("%w: %w", ErrLayer, err)
	}
	if blob != nil {
		if got := "sha256:" + hex.EncodeToString(blob.Sum(nil)); got != want.String() {
			return fmt.Errorf("%w: digest mismatch: the blob is %s, the manifest says %s", ErrLayer, got, want)
		}
	}
	if got := "sha256:" + hex.EncodeToString(diff.Sum(nil)); got != diffID.String() {
		return fmt.Errorf("%w: digest mismatch: the uncompressed layer is %s, the config's diff_id is %s", ErrLayer, got, diffID)
	}
	return nil
}

// ctxReader ends a read when its context is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := c.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) && c.ctx.Err() != nil {
		err = c.ctx.Err()
	}
	return n, err
}
