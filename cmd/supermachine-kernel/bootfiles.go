package main

import (
	"context"
	"os"
	"path/filepath"

	"github.com/supermachine-go/supermachine-kernel/initramfs"
	"github.com/supermachine-go/supermachine-kernel/internal/bootfiles"
	"github.com/supermachine-go/supermachine-kernel/internal/extract"
	"github.com/supermachine-go/supermachine-kernel/internal/guestassets"
	"github.com/supermachine-go/supermachine-kernel/kernel"
)

// The generated boot files (the agent initramfs and the default busybox
// root) are cached by content in <asset cache>/boot/ by
// internal/bootfiles, which microvm uses too.

// cachedInitramfs returns the path of the agent initramfs for o built
// from the busybox and agent of set's arch, building it on the first use.
func cachedInitramfs(ctx context.Context, o initramfs.Options, set guestassets.Set) (string, error) {
	a, err := bootfiles.For(set.Arch)
	if err != nil {
		return "", err
	}
	return bootfiles.Initramfs(ctx, o, a)
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

// cachedBusyboxRoot returns the path of the squashfs root holding the
// host arch's bundled busybox, building it on the first use.
func cachedBusyboxRoot(ctx context.Context) (string, error) {
	a, err := bootfiles.For(kernel.Arch)
	if err != nil {
		return "", err
	}
	return bootfiles.BusyboxRoot(ctx, a)
}
