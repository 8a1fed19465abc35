//go:build !amd64 && !arm64

package kernel

// Declared only so that kernel_unsupported.go's error is the only one the
// build reports.
func vmlinuxAsset() *Asset { return nil }
