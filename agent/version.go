package agent

import "github.com/supermachine-go/supermachine-kernel/agent/protocol"

// Version is the version of the supermachine agent: of the guest binary built
// from ./cmd/supermachine-agent and of this client.
const Version = protocol.AgentVersion

// DefaultVsockPort is the AF_VSOCK port the agent listens on unless
// configured otherwise (-vsock-port, supermachine.vsock_port=).
const DefaultVsockPort = protocol.DefaultVsockPort

// DefaultSerialPort is the name of the virtio-serial port the agent serves
// unless configured otherwise (-serial-port, supermachine.serial_port=).
const DefaultSerialPort = protocol.DefaultSerialPort
