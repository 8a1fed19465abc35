package agent

import (
	"context"
	"time"

	"github.com/supermachine-go/supermachine-kernel/agent/protocol"
)

var deadlinePast = time.Unix(1, 0)

// Ping checks that the agent answers.
func (c *Client) Ping(ctx context.Context) error {
	return c.call(ctx, &protocol.Request{Method: protocol.MethodPing}, nil)
}

// Version returns the agent's version, e.g. "0.1.0".
func (c *Client) Version(ctx context.Context) (string, error) {
	var v protocol.VersionInfo
	err := c.call(ctx, &protocol.Request{Method: protocol.MethodVersion}, &v)
	return v.AgentVersion, err
}

// Info describes the guest and its agent.
type Info struct {
	AgentVersion    string        // agent version, e.g. "0.1.0"
	ProtocolVersion int           // wire protocol version
	KernelRelease   string        // uname -r
	Arch            string        // GOARCH of the agent: "amd64" or "arm64"
	Hostname        string        // uname -n
	Uptime          time.Duration // time since the guest kernel booted
	MemTotal        uint64        // bytes of RAM
	MemFree         uint64        // bytes of free RAM
	MemAvailable    uint64        // bytes available for new processes
	NumCPU          int           // CPUs online
	Pid             int           // the agent's pid: 1 when it is init
}

// Info returns facts about the guest and the agent.
func (c *Client) Info(ctx context.Context) (*Info, error) {
	var in protocol.Info
	if err := c.call(ctx, &protocol.Request{Method: protocol.MethodInfo}, &in); err != nil {
		return nil, err
	}
	return &Info{
		AgentVersion: in.AgentVersion, ProtocolVersion: in.ProtocolVersion,
		KernelRelease: in.KernelRelease, Arch: in.Arch, Hostname: in.Hostname,
		Uptime: time.Duration(in.UptimeNS), MemTotal: in.MemTotal, MemFree: in.MemFree,
		MemAvailable: in.MemAvailable, NumCPU: in.NumCPU, Pid: in.Pid,
	}, nil
}

// Sync flushes the guest's filesystems (sync(2)).
func (c *Client) Sync(ctx context.Context) error {
	return c.call(ctx, &protocol.Request{Method: protocol.MethodSync}, nil)
}

// SetTime sets the guest's CLOCK_REALTIME to t. Hosts do this after
// restoring a snapshot, whose clock is stuck at the time it was taken.
func (c *Client) SetTime(ctx context.Context, t time.Time) error {
	return c.call(ctx, &protocol.Request{Method: protocol.MethodSetTime, Time: &protocol.TimeRequest{UnixNano: t.UnixNano()}}, nil)
}

// PowerOff asks the agent to sync and power the guest off. It returns once
// the agent accepted; the guest goes down right after. An agent that is not
// PID 1 refuses with an *Error matching fs.ErrPermission.
func (c *Client) PowerOff(ctx context.Context) error {
	return c.call(ctx, &protocol.Request{Method: protocol.MethodPowerOff}, nil)
}

// Reboot asks the agent to sync and reboot the guest. Under a VMM without
// ACPI power-off (or configured with reboot=exit semantics), this is how a
// guest exits.
func (c *Client) Reboot(ctx context.Context) error {
	return c.call(ctx, &protocol.Request{Method: protocol.MethodReboot}, nil)
}
