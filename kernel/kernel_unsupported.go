//go:build !amd64 && !arm64

package kernel

// The assets exist for linux/amd64 and linux/arm64 guests only, and a build
// picks the assets of its own GOARCH. On any other GOARCH the build fails
// on purpose, with the error
//
//	undefined: supermachine_kernel_supports_only_GOARCH_amd64_and_arm64
//
// Build for GOARCH=amd64 or GOARCH=arm64, or keep this package out of
// builds for other architectures with a build constraint.
const arch = supermachine_kernel_supports_only_GOARCH_amd64_and_arm64

// Declared only so that the error above is the only one the build reports.
const (
	sourceDateEpoch = 0
	kernelSize      = 0
	busyboxSize     = 0
	agentSize       = 0
)

var kernelData, busyboxData, agentData assetData

var vmlinuxData *assetData
