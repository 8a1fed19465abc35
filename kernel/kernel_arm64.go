//go:build arm64

package kernel

import assets "github.com/supermachine-go/supermachine-kernel/kernel-arm64"

// The arm64 assets come from the kernel-arm64 module. Only this file
// imports it, so only arm64 builds download and link its blobs.
const (
	arch            = assets.Arch
	sourceDateEpoch = assets.SourceDateEpoch
	kernelSize      = assets.KernelSize
	busyboxSize     = assets.BusyboxSize
)

// kernelFile is what the kernel build calls an arm64 kernel: Image, the
// uncompressed format QEMU, Firecracker, Cloud Hypervisor and Apple's
// Virtualization framework boot directly.
const kernelFile = "Image"

var kernelData = assetData{
	xz: assets.KernelXZ,
	info: AssetInfo{
		Name: "kernel", File: kernelFile, Mode: 0o644,
		Size: assets.KernelSize, SHA256: assets.KernelSHA256,
		XZSize: assets.KernelXZSize, XZSHA256: assets.KernelXZSHA256,
		Version: assets.KernelVersion, Format: assets.KernelFormat,
		Source: assets.KernelSource, Builder: assets.KernelBuilder,
		XZSettings: assets.KernelXZSettings, ConfigSHA256: assets.KernelConfigSHA256,
	},
}

var busyboxData = assetData{
	xz: assets.BusyboxXZ,
	info: AssetInfo{
		Name: "busybox", File: "busybox", Mode: 0o755,
		Size: assets.BusyboxSize, SHA256: assets.BusyboxSHA256,
		XZSize: assets.BusyboxXZSize, XZSHA256: assets.BusyboxXZSHA256,
		Version: assets.BusyboxVersion, Format: assets.BusyboxFormat,
		Source: assets.BusyboxSource, Builder: assets.BusyboxBuilder,
		XZSettings: assets.BusyboxXZSettings,
	},
}
