//go:build amd64

package kernel

import assets "github.com/supermachine-go/supermachine-kernel/kernel-amd64"

const agentSize = assets.AgentSize

var agentData = assetData{
	xz: assets.AgentXZ,
	info: AssetInfo{
		Name: "agent", File: "supermachine-agent", Mode: 0o755,
		Size: assets.AgentSize, SHA256: assets.AgentSHA256,
		XZSize: assets.AgentXZSize, XZSHA256: assets.AgentXZSHA256,
		Version: assets.AgentVersion, Format: assets.AgentFormat,
		Source: assets.AgentSource, Builder: assets.AgentBuilder,
		XZSettings: assets.AgentXZSettings,
	},
}
