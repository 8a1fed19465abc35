package kernel

// Vmlinux is the kernel in the form VMMs load without decompressing it.
//
// On amd64 it is the kernel's ELF image, vmlinux, with the Xen PVH entry
// note: what Firecracker's released versions require on x86-64, and what
// QEMU (-kernel with an ELF), Cloud Hypervisor and crosvm enter through
// PVH. It is not embedded: it is the LZ4 payload of the bundled bzImage,
// decoded on demand and checked against the SHA-256 that the asset
// pipeline recorded when it packed the kernel (about 16 MB; Bytes keeps
// it in memory, ExtractTo and Cached stream nothing and keep nothing).
// A bzImage whose payload does not decode, or a vmlinux that does not
// match, gives an error matching ErrChecksum that names "vmlinux", and
// no file is left behind. Its File is "vmlinux" and its Mode 0644.
//
// On arm64 Vmlinux is Kernel: the bundled Image is already uncompressed,
// and it is what Firecracker, Cloud Hypervisor, crosvm and Apple's
// Virtualization.framework boot.
var Vmlinux = vmlinuxAsset()
