package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/supermachine-go/supermachine-kernel/agent"
)

const connectHelp = `agent address:
  unix:PATH          a Unix socket: the agent's -listen-unix, or a VMM's socket
                     for the guest's virtio-serial port (QEMU chardev)
  vsock:CID:PORT     native AF_VSOCK (vhost-vsock)
  hvsock:PATH:PORT   Firecracker / Cloud Hypervisor hybrid vsock Unix socket`

func cmdExec(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("exec", "-connect ADDR [flags] -- COMMAND [ARG...]", stderr)
	addr := fs.String("connect", "", "the agent's address (see below)")
	tty := fs.Bool("tty", false, "run COMMAND on a pseudo-terminal, attached to this terminal in raw mode (keys, ^C included, go to the guest; window size changes follow)")
	timeout := fs.Duration("timeout", 0, "give up after this long (0: no limit)")
	connectTimeout := fs.Duration("connect-timeout", defaultConnectTimeout, "give up connecting to the agent (the connection and the protocol handshake) after this long; a guest still booting behind hybrid vsock is waited for until then")
	usage := fs.Usage
	fs.Usage = func() { usage(); fmt.Fprintln(stderr, "\n"+connectHelp) }
	if err := parse(fs, args); err != nil {
		return err
	}
	if *addr == "" || fs.NArg() == 0 {
		fs.Usage()
		return errUsage
	}
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	c, err := dialAgent(ctx, *addr, *connectTimeout)
	if err != nil {
		return err
	}
	defer c.Close()
	code, err := runCommand(ctx, c, fs.Args(), *tty, stdout, stderr)
	if err != nil {
		return err
	}
	if code != 0 {
		return exitError{code}
	}
	return nil
}

// defaultConnectTimeout bounds connecting to an agent and its handshake:
// an agent answers in milliseconds once its guest runs; one that does not
// answer for this long sits in a paused or hung guest.
const defaultConnectTimeout = 30 * time.Second

// dialAgent connects to addr within limit and says what did not answer.
func dialAgent(ctx context.Context, addr string, limit time.Duration) (*agent.Client, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("-connect-timeout %s: want a positive duration", limit)
	}
	dctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	c, err := dial(dctx, addr)
	if err != nil && dctx.Err() != nil && ctx.Err() == nil {
		return nil, fmt.Errorf("the agent at %s did not answer within %s (-connect-timeout): is its guest paused, hung or still booting? (%w)", addr, limit, err)
	}
	return c, err
}

// dial connects to an agent address of the forms in connectHelp.
func dial(ctx context.Context, addr string) (*agent.Client, error) {
	kind, rest, _ := strings.Cut(addr, ":")
	switch kind {
	case "unix":
		if rest == "" {
			break
		}
		return agent.Dial(ctx, "unix", rest)
	case "vsock":
		cid, port, ok := strings.Cut(rest, ":")
		c, err1 := strconv.ParseUint(cid, 10, 32)
		p, err2 := strconv.ParseUint(port, 10, 32)
		if !ok || err1 != nil || err2 != nil {
			break
		}
		return agent.DialVsock(ctx, uint32(c), uint32(p))
	case "hvsock":
		i := strings.LastIndexByte(rest, ':')
		if i <= 0 {
			break
		}
		p, err := strconv.ParseUint(rest[i+1:], 10, 32)
		if err != nil {
			break
		}
		// The guest may still be booting: DialHybridVsock retries until
		// ctx ends.
		return agent.DialHybridVsock(ctx, rest[:i], uint32(p))
	}
	return nil, fmt.Errorf("bad -connect address %q\n%s", addr, connectHelp)
}
