// Package kernel embeds the guest assets a microVM runtime needs to boot a
// Linux guest and run containers in it: a Linux kernel, a static busybox
// and the supermachine agent, for the GOARCH being built. Embedders import
// this one package in portable code and never download binaries out of
// band.
//
// # Which assets a build gets
//
// Build constraints pick the assets: a GOARCH=amd64 build embeds the
// linux/amd64 kernel (a bzImage), busybox and agent from the module
// github.com/supermachine-go/supermachine-kernel/kernel-amd64, a
// GOARCH=arm64 build the linux/arm64 ones (the kernel is an Image) from
// .../kernel-arm64. A build downloads and links only its own arch's
// module. Arch says which one was picked. The guest arch is the host arch:
// KVM and Apple's Hypervisor framework run guests of the host's arch.
//
// Any other GOARCH fails to build, with the error
//
//	undefined: supermachine_kernel_supports_only_GOARCH_amd64_and_arm64
//
// # Getting the assets
//
// Each asset is an *Asset: Kernel, Busybox and Agent. They are embedded
// xz-compressed and decoded on demand, in one of four ways, all verified
// against the SHA-256 in the manifest:
//
//   - Asset.Cached (or CacheAll for all three) returns the path of the
//     asset in a content-addressed cache, extracting it there the first
//     time. This is what most programs want: later calls, in this process
//     or the next, cost microseconds. See Cache.
//   - Asset.ExtractTo and ExtractAll write files where you say, atomically.
//   - Asset.Bytes returns the decoded bytes, kept in memory once decoded.
//   - Asset.NewReader streams them.
//
// Files are written with mode 0644 (kernel) or 0755 (busybox, agent), and
// never partially: a reader of a destination path sees either no file, the
// old file, or the complete verified asset, even if the writing process
// crashes or is killed.
//
// The functions KernelBytes, ExtractKernelTo, ExtractKernelToWithParents
// and the same for Busybox and Agent, and the constants KernelLen,
// BusyboxLen and AgentLen, mirror the API of the Rust crate this package
// follows.
//
// # Booting on a VMM
//
// Vmlinux is the kernel in the form VMMs load without decompressing: on
// amd64 the ELF vmlinux (with the PVH entry Firecracker needs), derived
// on demand from the bzImage's LZ4 payload and verified like the others;
// on arm64 the Image itself. CommandLine builds the kernel command line
// for either arch and for the kind of VMM (Shape: virtio-mmio, virtio-pci,
// or virtio-pci with the console on hvc0), under hardware virtualization
// or software emulation.
//
// # What the assets are
//
// Manifest returns versions, sizes and SHA-256 hashes of every asset and
// blob, the sources they were built from, and the SHA-256 of the kernel
// configuration, without decoding anything. The assets are reproducible
// builds of pinned sources; the arch modules hold the licences (the kernel
// and busybox are GPL-2.0) and say where the corresponding sources are.
//
// # Errors
//
// Errors from writing files are *fs.PathError values naming the
// destination; use errors.Is with fs.ErrNotExist, fs.ErrPermission,
// syscall.EROFS, syscall.ENOSPC, syscall.EISDIR or ErrSymlink to tell the
// causes apart. An asset that does not verify gives an error matching
// ErrChecksum, with details in a *ChecksumError.
package kernel
