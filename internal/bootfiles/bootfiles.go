// Package bootfiles prepares the files a boot of the bundled guest needs
// (the kernel, the agent initramfs, the default busybox root) from the
// assets of one arch, cached by content in <asset cache>/boot/.
//
// The assets of an arch reach this package through Register: the
// launcher registers its host's arch from the kernel facade (which links
// only that arch's blobs); a program that boots the other arch too
// registers it from the embedded assets of both (see microvm/allarch).
//
// A file in the cache is complete or absent: each is written through
// atomicfile, and concurrent writers of one key write the same content.
package bootfiles

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"

	"github.com/supermachine-go/supermachine-kernel/initramfs"
	"github.com/supermachine-go/supermachine-kernel/internal/atomicfile"
	"github.com/supermachine-go/supermachine-kernel/internal/rootfs"
	"github.com/supermachine-go/supermachine-kernel/kernel"
)

// Blob is an embedded guest binary: its digest and its decompressed
// bytes on demand.
type Blob struct {
	SHA256 string
	Bytes  func() ([]byte, error)
}

// Assets are the guest files of one arch.
type Assets struct {
	Arch          string // amd64 or arm64
	KernelVersion string
	// Kernel returns the path of the verified kernel in the asset cache
	// and its SHA-256; elf asks for the ELF vmlinux (the Firecracker
	// shape on amd64).
	Kernel  func(ctx context.Context, elf bool) (path, sha string, err error)
	Busybox Blob
	Agent   Blob
}

var (
	mu       sync.RWMutex
	registry = map[string]Assets{}
)

// Register makes the assets of a.Arch available to For; a later
// registration of the same arch replaces the earlier one.
func Register(a Assets) {
	mu.Lock()
	defer mu.Unlock()
	registry[a.Arch] = a
}

// Arches returns the registered arches, sorted.
func Arches() []string {
	mu.RLock()
	defer mu.RUnlock()
	var a []string
	for k := range registry {
		a = append(a, k)
	}
	sort.Strings(a)
	return a
}

// ErrNotRegistered is returned (wrapped) by For for an arch whose assets
// this program does not link.
var ErrNotRegistered = fmt.Errorf("the assets of this arch are not linked into the program")

// For returns the registered assets of arch.
func For(arch string) (Assets, error) {
	mu.RLock()
	defer mu.RUnlock()
	a, ok := registry[arch]
	if !ok {
		var have []string
		for k := range registry {
			have = append(have, k)
		}
		slices.Sort(have)
		return Assets{}, fmt.Errorf("arch %q: %w (linked: %v)", arch, ErrNotRegistered, have)
	}
	return a, nil
}

// CacheDir is <asset cache>/boot, created if needed.
func CacheDir() (string, error) {
	dir, err := kernel.DefaultCacheDir()
	if err != nil {
		return "", err
	}
	dir = filepath.Join(dir, "boot")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("boot file cache: %w", err)
	}
	return dir, nil
}

// Initramfs returns the path of the agent initramfs for o built from the
// busybox and agent of a, building it on the first use. o.Busybox and
// o.Agent are filled from a.
func Initramfs(ctx context.Context, o initramfs.Options, a Assets) (string, error) {
	key, err := initramfs.ContentKey(o, a.Busybox.SHA256, a.Agent.SHA256)
	if err != nil {
		return "", err
	}
	dir, err := CacheDir()
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "initramfs-"+a.Arch+"-"+key[:32]+".cpio")
	if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() {
		return path, nil
	}
	if o.Busybox, err = a.Busybox.Bytes(); err != nil {
		return "", err
	}
	if o.Agent, err = a.Agent.Bytes(); err != nil {
		return "", err
	}
	b, err := initramfs.Build(o)
	if err != nil {
		return "", err
	}
	return path, atomicfile.WriteFile(ctx, path, b, 0o644)
}

// WithSegment writes to dir an initramfs that is the one at initrd with a
// segment carrying s appended (see initramfs.Segment), and returns its
// path. The copy costs a few milliseconds; the kernel reads only one
// initramfs file.
func WithSegment(initrd, dir string, s initramfs.Settings) (string, error) {
	seg, err := initramfs.Segment(s)
	if err != nil {
		return "", err
	}
	base, err := os.ReadFile(initrd)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "initramfs.cpio")
	if err := os.WriteFile(path, append(base, seg...), 0o644); err != nil {
		return "", err
	}
	return path, nil
}

// busyboxRootVersion names what BusyboxRoot puts in the image; change it
// when that changes.
const busyboxRootVersion = "busybox root v1, squashfs zstd"

// BusyboxRoot returns the path of a squashfs root holding the busybox of
// a, building it on the first use.
func BusyboxRoot(ctx context.Context, a Assets) (string, error) {
	sum := sha256.Sum256([]byte(busyboxRootVersion + "\n" + a.Busybox.SHA256))
	dir, err := CacheDir()
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "root-"+hex.EncodeToString(sum[:16])+".squashfs")
	if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() {
		return path, nil
	}
	bb, err := a.Busybox.Bytes()
	if err != nil {
		return "", err
	}
	work, err := os.MkdirTemp(dir, ".root-build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	tree := filepath.Join(work, "tree")
	if err := rootfs.WriteBusyboxTree(tree, bb, nil); err != nil {
		return "", err
	}
	// The image is about a megabyte: read back and written atomically.
	img := filepath.Join(work, "root.squashfs")
	if err := rootfs.Squashfs(ctx, tree, img, "zstd"); err != nil {
		return "", err
	}
	b, err := os.ReadFile(img)
	if err != nil {
		return "", err
	}
	return path, atomicfile.WriteFile(ctx, path, b, 0o644)
}
