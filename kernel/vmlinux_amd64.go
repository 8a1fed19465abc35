//go:build amd64

package kernel

import (
	"github.com/supermachine-go/supermachine-kernel/internal/bzimage"
	"github.com/supermachine-go/supermachine-kernel/internal/extract"
	assets "github.com/supermachine-go/supermachine-kernel/kernel-amd64"
)

func vmlinuxAsset() *Asset {
	return &Asset{data: assetData{
		derive: deriveVmlinux,
		info: AssetInfo{
			Name: "vmlinux", File: "vmlinux", Mode: 0o644,
			Size: assets.VmlinuxSize, SHA256: assets.VmlinuxSHA256,
			Version: assets.KernelVersion, Format: assets.VmlinuxFormat,
			Source:  "the LZ4 payload of the bzImage (" + assets.KernelSHA256 + "), decoded on demand",
			Builder: assets.KernelBuilder, ConfigSHA256: assets.KernelConfigSHA256,
		},
	}}
}

// deriveVmlinux decodes the bzImage (without keeping it, unless Kernel
// already holds it) and its LZ4 payload. The caller verifies the result.
func deriveVmlinux() ([]byte, error) {
	bz, err := extract.Decode(Kernel.source())
	if err != nil {
		return nil, err
	}
	return bzimage.Vmlinux(bz, assets.VmlinuxSize)
}
