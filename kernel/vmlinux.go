package kernel

import (
	"github.com/supermachine-go/supermachine-kernel/internal/bzimage"
	"github.com/supermachine-go/supermachine-kernel/internal/extract"
)

// Vmlinux is the kernel in the form VMMs load without decompressing it.
//
// On amd64 it is the kernel's ELF image, vmlinux, with the Xen PVH entry
// note: what Firecracker's released versions require on x86-64, and what
// QEMU (-kernel with an ELF), Cloud Hypervisor and crosvm enter through
// PVH. It is not embedded: it is the LZ4 payload of the bundled bzImage,
// decoded on demand and checked against the SHA-256 that the asset
// pipeline recorded when it packed the kernel (about 16 MB; Bytes keeps
// it in memory, ExtractTo and Cached keep nothing). A bzImage whose
// payload does not decode, or a vmlinux that does not match, gives an
// error matching ErrChecksum that names "vmlinux", and no file is left
// behind. Its File is "vmlinux" and its Mode 0644.
//
// On arm64 Vmlinux is Kernel: the bundled Image is already uncompressed,
// and it is what Firecracker, Cloud Hypervisor, crosvm and Apple's
// Virtualization.framework boot.
var Vmlinux = vmlinuxAsset()

// vmlinuxAsset makes Vmlinux from the generated wiring's vmlinuxData,
// nil where the kernel needs no decompressing.
func vmlinuxAsset() *Asset {
	if vmlinuxData == nil {
		return Kernel
	}
	return &Asset{data: *vmlinuxData}
}

// deriveVmlinux decodes the bzImage (without keeping it, unless Kernel
// already holds it) and its LZ4 payload, which must decode to size
// bytes. The caller verifies the result.
func deriveVmlinux(size int64) ([]byte, error) {
	bz, err := extract.Decode(Kernel.source())
	if err != nil {
		return nil, err
	}
	return bzimage.Vmlinux(bz, size)
}
