package main

import (
	"fmt"
	"path/filepath"

	"github.com/supermachine-go/supermachine-kernel/internal/bzimage"
)

// derivedInfo describes a file that is not embedded but derived from an
// embedded asset: the amd64 kernel's ELF vmlinux, decoded from the LZ4
// payload of the bzImage. The facade derives it on demand and checks it
// against these numbers.
type derivedInfo struct {
	File   string `json:"file"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	Format string `json:"format"`
	From   string `json:"from"`
}

// vmlinuxFormat is the manifest's word for the derived vmlinux.
const vmlinuxFormat = "ELF (x86-64, PVH entry)"

// deriveVmlinux decodes the ELF vmlinux from the bzImage bz and checks it:
// an x86-64 ELF with the PVH entry note. Kernels of other formats (the
// arm64 Image, already uncompressed) have none: it returns nil, nil.
func deriveVmlinux(format string, bz []byte) (*derivedInfo, error) {
	if format != "bzImage" {
		return nil, nil
	}
	size, err := bzimage.DecodedSize(bz)
	if err != nil {
		return nil, fmt.Errorf("vmlinux: %w", err)
	}
	vm, err := bzimage.Vmlinux(bz, size)
	if err != nil {
		return nil, fmt.Errorf("vmlinux: %w", err)
	}
	if _, err := bzimage.PVHEntry(vm); err != nil {
		return nil, fmt.Errorf("vmlinux: %w", err)
	}
	return &derivedInfo{
		File: "vmlinux", Size: size, SHA256: sha256Hex(vm), Format: vmlinuxFormat,
		From: "the LZ4 payload of the bzImage, decoded on demand (not embedded)",
	}, nil
}

// genArch rewrites the derived entries of arch's manifest from its
// committed kernel blob, then the generated constants. The derived
// entries are a function of the kernel's bytes, so recomputing them is
// always right; the blob is checked against the manifest first.
func (p *pipeline) genArch(arch string) error {
	dir := p.moduleDir(arch)
	m, err := readManifest(dir)
	if err != nil {
		return err
	}
	if k := m.Kernel; k != nil {
		raw, err := decodeBlob(filepath.Join(dir, k.File), k)
		if err != nil {
			return err
		}
		if k.Vmlinux, err = deriveVmlinux(k.Format, raw); err != nil {
			return fmt.Errorf("%s/%s: %w", arch, k.File, err)
		}
		if k.Vmlinux != nil {
			logf("%s/vmlinux: %d bytes, sha256 %s (derived from %s)", arch, k.Vmlinux.Size, k.Vmlinux.SHA256, k.File)
		}
	}
	if err := writeManifest(dir, m); err != nil {
		return err
	}
	return writeGenerated(p.root, m)
}

// checkVmlinux checks that the kernel bz derives to the vmlinux the
// manifest entry k records (or that neither has one).
func checkVmlinux(arch string, k *assetInfo, bz []byte) error {
	got, err := deriveVmlinux(k.Format, bz)
	if err != nil {
		return fmt.Errorf("%s/%s: %w", arch, k.File, err)
	}
	switch want := k.Vmlinux; {
	case got == nil && want == nil:
		return nil
	case want == nil:
		return fmt.Errorf("%s: manifest has no vmlinux entry for the bzImage: run go run ./tools/assets gen", arch)
	case got == nil:
		return fmt.Errorf("%s: manifest has a vmlinux entry but the kernel is a %s", arch, k.Format)
	case *got != *want:
		return fmt.Errorf("%s/vmlinux: derived %d bytes with SHA-256 %s, manifest says %d bytes, %s (run go run ./tools/assets gen)",
			arch, got.Size, got.SHA256, want.Size, want.SHA256)
	}
	logf("%s/vmlinux: ok (%d bytes, sha256 %s)", arch, got.Size, got.SHA256)
	return nil
}
