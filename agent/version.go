package agent

// Version is the version of the supermachine agent: of the guest binary built
// from ./cmd/supermachine-agent and of this client. The asset pipeline reads it
// to label the packed agent binary.
const Version = "0.1.0"
