//go:build amd64

package kernel

import assets "github.com/supermachine-go/supermachine-kernel/kernel-amd64"

// The amd64 assets come from the kernel-amd64 module. Only this file
// imports it, so only amd64 builds download and link its blobs.
const (
	arch            = assets.Arch
	sourceDateEpoch = assets.SourceDateEpoch
	kernelSize      = assets.KernelSize
	busyboxSize     = assets.BusyboxSize
)

// kernelFile is what the kernel build calls an amd64 kernel: a bzImage,
// the format QEMU, Firecracker and Cloud Hypervisor boot directly.
const kernelFile = "bzImage"

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
