package protocol

// AgentVersion is the version of the supermachine agent: of the guest
// binary built from agent/cmd/supermachine-agent and of the host client in
// package agent, which re-exports it as agent.Version. The guest reports it
// in answers to the version and info methods; the asset pipeline reads this
// line to label the packed agent binary.
const AgentVersion = "0.2.0"

// DefaultVsockPort is the AF_VSOCK port the agent listens on unless
// configured otherwise (-vsock-port, supermachine.vsock_port=).
const DefaultVsockPort = 1024

// DefaultSerialPort is the name of the virtio-serial port the agent serves
// unless configured otherwise (-serial-port, supermachine.serial_port=).
const DefaultSerialPort = "supermachine.agent"
