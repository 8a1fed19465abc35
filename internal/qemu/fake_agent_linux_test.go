package qemu

import (
	"net"

	"github.com/supermachine-go/supermachine-kernel/agent/server"
)

// fakeAgentWorks says whether the fake QEMU can serve the agent protocol
// (the agent's server runs on Linux only).
const fakeAgentWorks = true

// serveFakeAgent serves the agent protocol on l, as a guest's agent.
func serveFakeAgent(l net.Listener) { server.New(server.Config{Version: "fake"}).Serve(l) }
