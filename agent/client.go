package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/mdlayher/vsock"
	"github.com/supermachine-go/supermachine-kernel/agent/protocol"
	"github.com/supermachine-go/supermachine-kernel/internal/poll"
)

// Error is a failure reported by the agent. errors.Is maps its Code to
// fs.ErrNotExist, fs.ErrPermission, fs.ErrExist and fs.ErrInvalid.
type Error = protocol.Error

// Errors of the client.
var (
	// ErrTimedOut is matched (with errors.Is) by the *ExitError of a
	// command that the agent killed because its Timeout expired.
	ErrTimedOut = errors.New("agent: timed out")
	// ErrVersionMismatch means the agent speaks another protocol version.
	ErrVersionMismatch = protocol.ErrVersionMismatch
	// ErrClosed is returned by calls on a closed Client.
	ErrClosed = errors.New("agent: client closed")
	// ErrConnectionLost means the connection to the agent broke before a
	// call finished.
	ErrConnectionLost = errors.New("agent: connection lost")
	// ErrHybridVsock means the hybrid-vsock Unix socket answered the
	// CONNECT request with something other than "OK <port>".
	ErrHybridVsock = errors.New("agent: hybrid vsock: unexpected reply")
)

// Client is a connection to an agent. It is safe for concurrent use: each
// call and each command runs on its own stream of the connection, and a
// stream whose data nobody reads never holds up the others.
type Client struct {
	conn io.ReadWriteCloser
	sess *yamux.Session
}

// StreamWindow is the yamux receive window per stream used by clients:
// how much output of one command may be in flight before the agent waits
// for the reader.
const StreamWindow = 4 << 20

// Keepalive defaults of a client (PROTOCOL.md, section 3). The client
// cannot tell a serial stream from a socket, so it uses the connection
// defaults unless told otherwise with [WithKeepAlive].
const (
	// DefaultKeepAlive is how often a client pings the agent.
	DefaultKeepAlive = 30 * time.Second
	// KeepAliveTimeout is how long a ping (or any write to the
	// connection) may wait before the client declares the session dead.
	KeepAliveTimeout = 10 * time.Second
)

// handshakeRetry is the cadence at which the client repeats a handshake
// message that got no answer (PROTOCOL.md, section 2).
var handshakeRetry = poll.Backoff{Initial: 50 * time.Millisecond, Max: 250 * time.Millisecond}

// An Option changes how NewClient sets up a client.
type Option func(*clientOptions)

type clientOptions struct {
	keepAlive time.Duration
}

// WithKeepAlive makes the client ping the agent every interval (default
// [DefaultKeepAlive]) and end the session, failing every call, when a
// ping is not answered within [KeepAliveTimeout]. A negative interval
// turns pings off. On a serial stream, where a vanished agent shows no
// error, use the agent's own interval there: 5 s.
func WithKeepAlive(interval time.Duration) Option {
	return func(o *clientOptions) { o.keepAlive = interval }
}

// NewClient runs the handshake on rwc and returns a Client using it. rwc can
// be any reliable byte stream to the agent: a net.Conn, or a serial stream
// such as the Unix socket of a QEMU chardev backing the agent's
// virtio-serial port. On such a stream NewClient repeats its hello until the
// agent answers (the agent may still be booting, or busy noticing that an
// earlier client went away), so bound ctx with a deadline. The Client owns
// rwc and closes it on Close, or if NewClient fails.
func NewClient(ctx context.Context, rwc io.ReadWriteCloser, opts ...Option) (*Client, error) {
	o := clientOptions{keepAlive: DefaultKeepAlive}
	for _, opt := range opts {
		opt(&o)
	}
	if err := clientHandshake(ctx, rwc); err != nil {
		rwc.Close()
		return nil, err
	}
	cfg := yamux.DefaultConfig()
	cfg.LogOutput = io.Discard
	cfg.MaxStreamWindowSize = StreamWindow
	cfg.StreamCloseTimeout = time.Minute
	cfg.StreamOpenTimeout = 30 * time.Second
	cfg.EnableKeepAlive = o.keepAlive > 0
	if o.keepAlive > 0 {
		cfg.KeepAliveInterval = o.keepAlive
	}
	cfg.ConnectionWriteTimeout = KeepAliveTimeout
	sess, err := yamux.Client(rwc, cfg)
	if err != nil {
		rwc.Close()
		return nil, err
	}
	return &Client{conn: rwc, sess: sess}, nil
}

// clientHandshake runs the client side of the handshake (see PROTOCOL.md).
func clientHandshake(ctx context.Context, rwc io.ReadWriteCloser) error {
	nonce := rand.Uint64()
	type result struct {
		h   protocol.Hello
		err error
	}
	msgs := make(chan result, 4)
	stopRead := make(chan struct{})
	defer close(stopRead)
	go func() {
		for {
			h, _, err := protocol.ScanHello(rwc, 1<<20)
			select {
			case msgs <- result{h, err}:
			case <-stopRead:
				return
			}
			// Stop reading right after our go message: the yamux session
			// owns the following bytes.
			if err != nil || h.Kind == protocol.KindGo && h.Nonce == nonce {
				return
			}
		}
	}()
	// Unblock the reader if ctx ends.
	stop := context.AfterFunc(ctx, func() {
		if c, ok := rwc.(interface{ SetReadDeadline(time.Time) error }); ok {
			c.SetReadDeadline(time.Now())
		} else {
			rwc.Close()
		}
	})
	defer stop()

	fail := func(err error) error {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return fmt.Errorf("agent: handshake: %w", err)
	}
	send := func(k protocol.HelloKind) error {
		return protocol.WriteHello(rwc, protocol.Hello{Kind: k, Version: protocol.Version, Nonce: nonce})
	}
	if err := send(protocol.KindHello); err != nil {
		return fail(err)
	}
	acked := false
	retry := handshakeRetry
	timer := time.NewTimer(retry.Next())
	defer timer.Stop()
	for {
		select {
		case r := <-msgs:
			if r.err != nil {
				if ctx.Err() != nil {
					return fmt.Errorf("agent: handshake: %w", ctx.Err())
				}
				if errors.Is(r.err, io.EOF) || errors.Is(r.err, io.ErrUnexpectedEOF) {
					return fmt.Errorf("agent: handshake: connection closed by the agent: %w", ErrConnectionLost)
				}
				return fmt.Errorf("agent: handshake: %w", r.err)
			}
			if r.h.Nonce != nonce {
				continue // an answer to an earlier client of this stream
			}
			switch r.h.Kind {
			case protocol.KindAck:
				if r.h.Version != protocol.Version {
					return fmt.Errorf("agent: handshake: %w: the agent speaks protocol version %d, this client %d", ErrVersionMismatch, r.h.Version, protocol.Version)
				}
				if !acked {
					acked = true
					if err := send(protocol.KindStart); err != nil {
						return fail(err)
					}
				}
			case protocol.KindGo:
				if !stop() {
					return fmt.Errorf("agent: handshake: %w", ctx.Err())
				}
				if c, ok := rwc.(interface{ SetReadDeadline(time.Time) error }); ok {
					c.SetReadDeadline(time.Time{})
				}
				return nil
			}
		case <-timer.C:
			// No answer yet: the agent is not there yet, or a stale session
			// on a serial stream swallowed our message. Say it again.
			k := protocol.KindHello
			if acked {
				k = protocol.KindStart
			}
			if err := send(k); err != nil {
				return fail(err)
			}
			timer.Reset(retry.Next())
		case <-ctx.Done():
			return fmt.Errorf("agent: handshake: %w", ctx.Err())
		}
	}
}

// Dial connects to an agent at address on the named network (as
// net.Dialer.DialContext; typically "unix") and runs the handshake.
func Dial(ctx context.Context, network, address string) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, address)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("agent: dial %s %s: %w", network, address, ctx.Err())
		}
		return nil, err
	}
	return NewClient(ctx, conn)
}

// DialVsock connects to an agent over native AF_VSOCK (the vhost-vsock
// device of QEMU, or a vsock loopback) at the guest's context ID and port,
// and runs the handshake. ctx bounds the connect as well as the handshake.
// It works on Linux hosts only.
func DialVsock(ctx context.Context, cid, port uint32) (*Client, error) {
	conn, err := vsock.DialContext(ctx, cid, port, nil)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("agent: dial vsock %d:%d: %w", cid, port, ctx.Err())
		}
		return nil, err
	}
	return NewClient(ctx, conn)
}

// Close closes the connection. Commands still running in the guest are
// killed by the agent (their process groups get SIGKILL).
func (c *Client) Close() error {
	err := c.sess.Close()
	c.conn.Close()
	return err
}

// openStream opens a stream for one call and sends its request. The
// stream's deadline follows ctx; the returned stop function releases that.
func (c *Client) openStream(ctx context.Context, req *protocol.Request) (*yamux.Stream, func() bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	if c.sess.IsClosed() {
		return nil, nil, ErrClosed
	}
	st, err := c.sess.OpenStream()
	if err != nil {
		return nil, nil, c.connErr(err)
	}
	stop := context.AfterFunc(ctx, func() {
		st.SetDeadline(time.Now())
		st.Close()
	})
	b, err := protocol.Marshal(req)
	if err == nil {
		err = protocol.WriteFrame(st, protocol.FrameRequest, b)
	}
	if err != nil {
		stop()
		st.Close()
		return nil, nil, c.connErr(err)
	}
	return st, stop, nil
}

// connErr turns a stream error into a client error.
func (c *Client) connErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, yamux.ErrSessionShutdown) || errors.Is(err, yamux.ErrConnectionReset) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, yamux.ErrStreamClosed) {
		return fmt.Errorf("%w: %v", ErrConnectionLost, err)
	}
	return err
}

// ctxErr returns ctx's error if ctx is done, err otherwise: a deadline
// that fired shows as a stream timeout.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// readResponse reads the first frame of a call's answer: a response,
// decoded into v, or an error frame, returned as *Error.
func readResponse(st *yamux.Stream, v any) error {
	t, p, err := protocol.ReadFrame(st, nil)
	if err != nil {
		return err
	}
	switch t {
	case protocol.FrameResponse:
		if v == nil {
			return nil
		}
		return protocol.Unmarshal(p, v)
	case protocol.FrameError:
		return protocol.DecodeError(p)
	}
	return fmt.Errorf("%w: unexpected %v frame", protocol.ErrMalformed, t)
}

// call runs a request/response method.
func (c *Client) call(ctx context.Context, req *protocol.Request, v any) error {
	st, stop, err := c.openStream(ctx, req)
	if err != nil {
		return err
	}
	defer st.Close()
	defer stop()
	if err := readResponse(st, v); err != nil {
		var ae *Error
		if errors.As(err, &ae) {
			return err
		}
		return ctxErr(ctx, c.connErr(err))
	}
	return nil
}
