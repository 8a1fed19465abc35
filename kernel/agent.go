package kernel

// Everything about the agent in the facade is in this file and the
// per-arch agent_amd64.go and agent_arm64.go.

// AgentLen is the length in bytes of the decoded supermachine agent.
const AgentLen = agentSize

// Agent is the supermachine agent: a static Go binary that runs as PID 1
// in the guest and serves exec and control requests over vsock. It is
// written with mode 0755.
var Agent = &Asset{data: agentData}

// AgentBytes returns the decoded agent; see Asset.Bytes.
func AgentBytes() ([]byte, error) { return Agent.Bytes() }

// ExtractAgentTo writes the agent to dest; see Asset.ExtractTo.
func ExtractAgentTo(dest string) error { return Agent.ExtractTo(dest) }

// ExtractAgentToWithParents writes the agent to dest, creating its parent
// directories; see Asset.ExtractToWithParents.
func ExtractAgentToWithParents(dest string) error { return Agent.ExtractToWithParents(dest) }
