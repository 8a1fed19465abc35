package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/supermachine-go/supermachine-kernel/internal/poll"
)

// DialHybridVsock connects to an agent through the hybrid-vsock Unix socket
// of Firecracker or Cloud Hypervisor: it connects to udsPath, sends
// "CONNECT <port>\n" and expects "OK <hostport>\n", where hostport is a
// port number the VMM chose on the host side (not the guest port). If the
// socket closes before the OK (the guest is not listening yet, typically
// still booting), it retries with exponential backoff until ctx is done. A
// reply other than OK is an error wrapping [ErrHybridVsock] and is not
// retried.
func DialHybridVsock(ctx context.Context, udsPath string, port uint32) (*Client, error) {
	conn, err := dialHybridVsock(ctx, udsPath, port)
	if err != nil {
		return nil, err
	}
	return NewClient(ctx, conn)
}

func dialHybridVsock(ctx context.Context, udsPath string, port uint32) (net.Conn, error) {
	var d net.Dialer
	var conn net.Conn
	err := poll.Until(ctx, poll.Peer, fmt.Sprintf("the agent behind hybrid vsock %s port %d", udsPath, port), func() (bool, error) {
		c, err := d.DialContext(ctx, "unix", udsPath)
		if err != nil {
			if ctx.Err() != nil {
				return false, nil // the deadline interrupted the dial
			}
			return false, poll.Stop(err)
		}
		retry, err := hybridConnect(ctx, c, port)
		if err == nil {
			conn = c
			return true, nil
		}
		c.Close()
		if !retry && ctx.Err() == nil {
			return false, poll.Stop(err)
		}
		return false, err
	})
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	return conn, nil
}

// hybridConnect sends CONNECT and reads the reply line. retry reports
// whether the failure means "not listening yet".
func hybridConnect(ctx context.Context, conn net.Conn, port uint32) (retry bool, err error) {
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	if _, err := fmt.Fprintf(conn, "CONNECT %d\n", port); err != nil {
		return errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET), err
	}
	// Read byte by byte: the bytes after the newline belong to the agent.
	var line []byte
	var b [1]byte
	for {
		n, err := conn.Read(b[:])
		if n == 1 {
			if b[0] == '\n' {
				break
			}
			line = append(line, b[0])
			if len(line) > 64 {
				return false, fmt.Errorf("%w: reply too long: %q", ErrHybridVsock, line)
			}
			continue
		}
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
				return true, fmt.Errorf("agent: hybrid vsock: connection closed before OK (guest port %d not listening yet?)", port)
			}
			return false, err
		}
	}
	s := strings.TrimSuffix(string(line), "\r")
	rest, ok := strings.CutPrefix(s, "OK ")
	if !ok {
		return false, fmt.Errorf("%w %q to CONNECT %d", ErrHybridVsock, s, port)
	}
	if _, err := strconv.ParseUint(rest, 10, 32); err != nil {
		return false, fmt.Errorf("%w %q to CONNECT %d", ErrHybridVsock, s, port)
	}
	return false, nil
}
