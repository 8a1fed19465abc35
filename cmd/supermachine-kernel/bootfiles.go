package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"

	"github.com/supermachine-go/supermachine-kernel/initramfs"
	"github.com/supermachine-go/supermachine-kernel/internal/atomicfile"
	"github.com/supermachine-go/supermachine-kernel/internal/extract"
	"github.com/supermachine-go/supermachine-kernel/internal/guestassets"
	"github.com/supermachine-go/supermachine-kernel/internal/rootfs"
	"github.com/supermachine-go/supermachine-kernel/kernel"
)

// The generated boot files (the agent initramfs and the default busybox
// root) are cached by content in <asset cache>/boot/, so a repeated boot
// prepares in well under 20 ms. A file there is complete or absent: each
// is written through atomicfile, and concurrent writers of one key write
// the same content.

// bootCacheDir is <asset cache>/boot, created if needed.
func bootCacheDir() (string, error) {
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

// cachedInitramfs returns the path of the agent initramfs for o built
// from the busybox and agent of set, building it on the first use.
func cachedInitramfs(ctx context.Context, o initramfs.Options, set guestassets.Set) (string, error) {
	key, err := initramfs.ContentKey(o, set.Busybox.SHA256, set.Agent.SHA256)
	if err != nil {
		return "", err
	}
	dir, err := bootCacheDir()
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "initramfs-"+set.Arch+"-"+key[:32]+".cpio")
	if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() {
		return path, nil
	}
	if o.Busybox, err = extract.Decode(set.Busybox); err != nil {
		return "", err
	}
	if o.Agent, err = extract.Decode(set.Agent); err != nil {
		return "", err
	}
	b, err := initramfs.Build(o)
	if err != nil {
		return "", err
	}
	return path, atomicfile.WriteFile(ctx, path, b, 0o644)
}

// withSegment writes to dir an initramfs that is the one at initrd with a
// segment carrying s appended (see initramfs.Segment), and returns its
// path.
func withSegment(initrd, dir string, s initramfs.Settings) (string, error) {
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

// cachedKernel returns the path of the verified kernel of set in the
// asset cache.
func cachedKernel(ctx context.Context, set guestassets.Set) (string, error) {
	dir, err := kernel.DefaultCacheDir()
	if err != nil {
		return "", err
	}
	return extract.Cache{Dir: dir}.Path(ctx, set.Kernel, set.KernelFile, 0o644)
}

// busyboxRootVersion names what cachedBusyboxRoot puts in the image;
// change it when that changes.
const busyboxRootVersion = "busybox root v1, squashfs zstd"

// cachedBusyboxRoot returns the path of a squashfs root holding the
// bundled busybox, building it on the first use.
func cachedBusyboxRoot(ctx context.Context) (string, error) {
	set, err := guestassets.For(kernel.Arch)
	if err != nil {
		return "", err
	}
	return cachedBusyboxRootOf(ctx, set)
}

// cachedBusyboxRootOf is cachedBusyboxRoot for the busybox of set's arch.
func cachedBusyboxRootOf(ctx context.Context, set guestassets.Set) (string, error) {
	sum := sha256.Sum256([]byte(busyboxRootVersion + "\n" + set.Busybox.SHA256))
	dir, err := bootCacheDir()
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "root-"+hex.EncodeToString(sum[:16])+".squashfs")
	if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() {
		return path, nil
	}
	bb, err := extract.Decode(set.Busybox)
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
