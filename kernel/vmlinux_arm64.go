//go:build arm64

package kernel

// vmlinuxAsset is Kernel on arm64: the Image is already uncompressed.
func vmlinuxAsset() *Asset { return Kernel }
