package kernel

// The assets and their constants. The per-arch values come from the
// generated assets_amd64.go and assets_arm64.go (go run ./tools/assets gen),
// the only files that import an arch module.

// Arch is the GOARCH whose assets this build embeds: "amd64" or "arm64".
// Builds for any other GOARCH fail (see the package documentation).
const Arch = arch

// SourceDateEpoch is the fixed build time of the assets, in Unix seconds:
// the assets are reproducible, and this is the time they all claim.
const SourceDateEpoch = sourceDateEpoch

// KernelLen is the length in bytes of the decoded kernel.
const KernelLen = kernelSize

// BusyboxLen is the length in bytes of the decoded busybox.
const BusyboxLen = busyboxSize

// AgentLen is the length in bytes of the decoded supermachine agent.
const AgentLen = agentSize

// Kernel is the Linux kernel: a bzImage on amd64, an Image on arm64,
// built with everything a microVM guest needs built in (no modules).
// It is written with mode 0644.
var Kernel = &Asset{data: kernelData}

// Busybox is a static busybox for the guest's init. It is written with
// mode 0755.
var Busybox = &Asset{data: busyboxData}

// Agent is the supermachine agent: a static Go binary that runs as PID 1
// in the guest and serves exec and control requests over vsock. It is
// written with mode 0755.
var Agent = &Asset{data: agentData}

// Assets returns Kernel, Busybox and Agent, in that order.
func Assets() []*Asset { return []*Asset{Kernel, Busybox, Agent} }

// KernelBytes returns the decoded kernel; see Asset.Bytes.
func KernelBytes() ([]byte, error) { return Kernel.Bytes() }

// ExtractKernelTo writes the kernel to dest; see Asset.ExtractTo.
func ExtractKernelTo(dest string) error { return Kernel.ExtractTo(dest) }

// ExtractKernelToWithParents writes the kernel to dest, creating its parent
// directories; see Asset.ExtractToWithParents.
func ExtractKernelToWithParents(dest string) error { return Kernel.ExtractToWithParents(dest) }

// BusyboxBytes returns the decoded busybox; see Asset.Bytes.
func BusyboxBytes() ([]byte, error) { return Busybox.Bytes() }

// ExtractBusyboxTo writes busybox to dest; see Asset.ExtractTo.
func ExtractBusyboxTo(dest string) error { return Busybox.ExtractTo(dest) }

// ExtractBusyboxToWithParents writes busybox to dest, creating its parent
// directories; see Asset.ExtractToWithParents.
func ExtractBusyboxToWithParents(dest string) error { return Busybox.ExtractToWithParents(dest) }

// AgentBytes returns the decoded agent; see Asset.Bytes.
func AgentBytes() ([]byte, error) { return Agent.Bytes() }

// ExtractAgentTo writes the agent to dest; see Asset.ExtractTo.
func ExtractAgentTo(dest string) error { return Agent.ExtractTo(dest) }

// ExtractAgentToWithParents writes the agent to dest, creating its parent
// directories; see Asset.ExtractToWithParents.
func ExtractAgentToWithParents(dest string) error { return Agent.ExtractToWithParents(dest) }
