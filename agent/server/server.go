//go:build linux

package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/supermachine-go/supermachine-kernel/agent/protocol"
	"github.com/supermachine-go/supermachine-kernel/internal/poll"
)

// Config configures a Server. The zero value works: it serves everything,
// waits for its children directly and refuses power-off unless it is PID 1.
type Config struct {
	// Version is the agent version reported by the version and info
	// methods.
	Version string

	// Logf, if set, receives log lines (connection errors, refused peers,
	// protocol violations). Debugf receives chatty per-RPC lines.
	Logf   func(format string, args ...any)
	Debugf func(format string, args ...any)

	// Starter starts exec'd processes. Nil means fork/exec and wait4(pid);
	// a PID-1 agent passes its *pid1.Reaper.
	Starter Starter

	// Root is the directory whose etc/passwd and etc/group resolve exec
	// users; empty means "/".
	Root string

	// PowerHook, if set, replaces the real power-off and reboot (sync +
	// reboot(2)) and lets the methods work when the agent is not PID 1;
	// tests set it. Without it, power-off and reboot are refused unless
	// the agent is PID 1.
	PowerHook func(reboot bool) error

	// SetClockHook, if set, replaces clock_settime(CLOCK_REALTIME); tests
	// set it.
	SetClockHook func(t time.Time) error

	// StreamWindow is the yamux per-stream receive window in bytes: how
	// much one session may have in flight. Zero means DefaultStreamWindow.
	StreamWindow uint32

	// HandshakeTimeout bounds the handshake on connection transports
	// (vsock, Unix sockets). Zero means 30 seconds.
	HandshakeTimeout time.Duration

	// OutputGrace is how long an exec keeps forwarding output after its
	// process exited, while background processes still hold the output
	// open. Zero means 1 second.
	OutputGrace time.Duration

	// Prepared, if not nil, holds back every request until it is closed,
	// while connections and handshakes go ahead: a PID-1 agent serves as
	// soon as it can and finishes setting up the guest (mounts, the
	// loopback interface) meanwhile.
	Prepared <-chan struct{}
}

// DefaultStreamWindow is the default yamux stream window: large enough
// that one stream can carry well over 1 GB/s on a local transport, while a
// stalled reader pins at most this much memory on the other side.
const DefaultStreamWindow = 4 << 20

// Server serves the agent protocol. Create it with New.
type Server struct {
	cfg Config

	mu       sync.Mutex
	closed   bool
	sessions map[*yamux.Session]struct{}
	conns    map[io.Closer]struct{}
	execs    map[execKey]*stdinSink // running execs with stdin, for exec_stdin

	nullOnce sync.Once
	nullFd   uintptr
	nullErr  error

	running atomic.Int64 // execs whose process has not been waited for
}

// ErrServerClosed is returned by the Serve methods after Close.
var ErrServerClosed = errors.New("agent server closed")

// New returns a Server with the given configuration.
func New(cfg Config) *Server {
	if cfg.Starter == nil {
		cfg.Starter = directStarter{}
	}
	if cfg.Root == "" {
		cfg.Root = "/"
	}
	if cfg.StreamWindow == 0 {
		cfg.StreamWindow = DefaultStreamWindow
	}
	if cfg.HandshakeTimeout == 0 {
		cfg.HandshakeTimeout = 30 * time.Second
	}
	if cfg.OutputGrace == 0 {
		cfg.OutputGrace = time.Second
	}
	return &Server{cfg: cfg, sessions: make(map[*yamux.Session]struct{}), conns: make(map[io.Closer]struct{}),
		execs: make(map[execKey]*stdinSink)}
}

func (s *Server) logf(format string, args ...any) {
	if s.cfg.Logf != nil {
		s.cfg.Logf(format, args...)
	}
}

func (s *Server) debugf(format string, args ...any) {
	if s.cfg.Debugf != nil {
		s.cfg.Debugf(format, args...)
	}
}

func (s *Server) yamuxConfig(stream bool) *yamux.Config {
	c := yamux.DefaultConfig()
	c.LogOutput = io.Discard
	c.MaxStreamWindowSize = s.cfg.StreamWindow
	c.StreamCloseTimeout = time.Minute
	c.StreamOpenTimeout = 30 * time.Second
	if stream {
		// A host that vanished from a serial port is noticed by the
		// keepalive: ping every 5 s, give up after 10 s without answer.
		c.KeepAliveInterval = protocol.SerialKeepAlive
		c.ConnectionWriteTimeout = 10 * time.Second
	}
	return c
}

// Serve accepts connections on l and serves each in its own goroutine until
// l fails or the server is closed. Every connection starts with the
// handshake; a connection that fails it, or whose session breaks, is closed
// without affecting the others.
func (s *Server) Serve(l net.Listener) error {
	if !s.track(l, true) {
		l.Close()
		return ErrServerClosed
	}
	defer s.track(l, false)
	// Accept errors that pass (out of descriptors, an aborted connection)
	// are retried from 5 ms, doubling up to 1 s.
	backoff := poll.Backoff{Initial: 5 * time.Millisecond, Max: time.Second}
	for {
		conn, err := l.Accept()
		if err != nil {
			if s.isClosed() {
				return ErrServerClosed
			}
			// Running out of file descriptors or a connection aborted
			// before accept is no reason to stop serving.
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) ||
				errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.ENOBUFS) {
				time.Sleep(backoff.Next())
				continue
			}
			return err
		}
		backoff.Reset()
		go func() {
			if err := s.ServeConn(conn); err != nil && !errors.Is(err, ErrServerClosed) {
				s.debugf("connection from %v: %v", conn.RemoteAddr(), err)
			}
		}()
	}
}

// ServeConn serves one connection: handshake, then one yamux session until
// it ends. It closes conn before returning.
func (s *Server) ServeConn(conn net.Conn) error {
	if !s.track(conn, true) {
		conn.Close()
		return ErrServerClosed
	}
	defer s.track(conn, false)
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	if err := s.handshake(conn, false); err != nil {
		if errors.Is(err, protocol.ErrBadMagic) || errors.Is(err, protocol.ErrMalformed) {
			fmt.Fprintf(conn, "supermachine-agent: handshake failed: %v\n", err)
		}
		return fmt.Errorf("handshake: %w", err)
	}
	conn.SetDeadline(time.Time{})
	return s.serveSession(&skipHellos{ReadWriteCloser: conn}, false, nil)
}

// handshake runs the server side of the handshake on rw. With scan set
// (long-lived streams), junk before and between handshake messages is
// skipped and a peer with another protocol version does not end the stream;
// otherwise the first bytes must be a handshake message.
func (s *Server) handshake(rw io.ReadWriter, scan bool) error {
	var nonce uint64
	acked := false
	for {
		var h protocol.Hello
		var err error
		if scan {
			var skipped int
			h, skipped, err = protocol.ScanHello(rw, -1)
			if skipped > 0 {
				s.debugf("handshake: skipped %d bytes of junk", skipped)
			}
		} else {
			h, err = protocol.ReadHello(rw)
		}
		if err != nil {
			return err
		}
		switch h.Kind {
		case protocol.KindHello:
			if err := protocol.WriteHello(rw, protocol.Hello{Kind: protocol.KindAck, Version: protocol.Version, Nonce: h.Nonce}); err != nil {
				return err
			}
			if h.Version != protocol.Version {
				err := fmt.Errorf("%w: client speaks protocol version %d, agent %d", protocol.ErrVersionMismatch, h.Version, protocol.Version)
				if !scan {
					return err
				}
				s.logf("handshake: %v", err)
				acked = false
				continue
			}
			nonce, acked = h.Nonce, true
		case protocol.KindStart:
			if acked && h.Nonce == nonce {
				return protocol.WriteHello(rw, protocol.Hello{Kind: protocol.KindGo, Version: protocol.Version, Nonce: nonce})
			}
			if !scan {
				return fmt.Errorf("%w: start before hello", protocol.ErrMalformed)
			}
		default:
			if !scan {
				return fmt.Errorf("%w: unexpected %v message from client", protocol.ErrMalformed, h.Kind)
			}
		}
	}
}

// skipHellos drops handshake messages at the start of a session: repeats a
// client sent before it saw the server's answer. A yamux frame starts with
// byte 0 and a handshake message with 'S', so the two cannot be confused.
type skipHellos struct {
	io.ReadWriteCloser
	done bool
}

func (r *skipHellos) Read(p []byte) (int, error) {
	if r.done || len(p) == 0 {
		return r.ReadWriteCloser.Read(p)
	}
	var b [protocol.HelloSize]byte
	for {
		if _, err := io.ReadFull(r.ReadWriteCloser, b[:1]); err != nil {
			return 0, err
		}
		if b[0] != protocol.Magic[0] {
			r.done = true
			p[0] = b[0]
			return 1, nil
		}
		if _, err := io.ReadFull(r.ReadWriteCloser, b[1:]); err != nil {
			return 0, err
		}
		if _, err := protocol.ParseHello(b[:]); err != nil {
			return 0, err
		}
	}
}

// serveSession runs a yamux server session on conn until it ends. started,
// if not nil, is called with the session before it serves.
func (s *Server) serveSession(conn io.ReadWriteCloser, stream bool, started func(*yamux.Session)) error {
	sess, err := yamux.Server(conn, s.yamuxConfig(stream))
	if err != nil {
		return err
	}
	if started != nil {
		started(sess)
	}
	if !s.track(sess, true) {
		sess.Close()
		return ErrServerClosed
	}
	defer s.track(sess, false)
	defer sess.Close()
	// Every call of the session ends when the session does.
	sessCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-sess.CloseChan()
		cancel()
	}()
	for {
		st, err := sess.AcceptStream()
		if err != nil {
			if errors.Is(err, yamux.ErrSessionShutdown) || errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		go s.handleStream(sessCtx, sess, st)
	}
}

func (s *Server) track(c any, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add && s.closed {
		return false
	}
	switch c := c.(type) {
	case *yamux.Session:
		if add {
			s.sessions[c] = struct{}{}
		} else {
			delete(s.sessions, c)
		}
	case io.Closer:
		if add {
			s.conns[c] = struct{}{}
		} else {
			delete(s.conns, c)
		}
	}
	return true
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Close stops the server: it closes the listeners, connections and streams
// it serves, which ends every session (and kills the process groups of
// running execs).
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	var cs []io.Closer
	for c := range s.conns {
		cs = append(cs, c)
	}
	for sess := range s.sessions {
		cs = append(cs, sess)
	}
	s.mu.Unlock()
	for _, c := range cs {
		c.Close()
	}
	return nil
}

// Shutdown closes the server as Close does, which kills the process groups
// of running execs, and waits until those processes have been waited for,
// or until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.Close()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for s.running.Load() > 0 {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d killed commands to exit: %w", s.running.Load(), ctx.Err())
		}
	}
	return nil
}

// Running returns the number of exec'd processes not yet waited for.
func (s *Server) Running() int {
	return int(s.running.Load())
}

// handleStream serves one RPC stream.
func (s *Server) handleStream(sessCtx context.Context, sess *yamux.Session, st *yamux.Stream) {
	defer st.Close()
	defer func() {
		if r := recover(); r != nil {
			// A PID-1 agent must not die of a bug in one RPC.
			s.logf("panic serving stream %d: %v\n%s", st.StreamID(), r, debug.Stack())
			sendError(st, &protocol.Error{Code: protocol.CodeInternal, Message: fmt.Sprint("internal error: ", r)})
		}
	}()
	st.SetReadDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	typ, p, err := protocol.ReadFrame(st, nil)
	st.SetReadDeadline(time.Time{})
	if err != nil {
		s.protocolError(st, err)
		return
	}
	if typ != protocol.FrameRequest {
		s.protocolError(st, fmt.Errorf("%w: expected a request frame, got %v", protocol.ErrMalformed, typ))
		return
	}
	req, err := protocol.DecodeRequest(p)
	if err != nil {
		s.protocolError(st, err)
		return
	}
	s.debugf("stream %d: %s", st.StreamID(), req.Method)
	ctx, cancel := context.WithCancel(sessCtx)
	defer cancel()
	if s.cfg.Prepared != nil {
		select {
		case <-s.cfg.Prepared:
		case <-ctx.Done():
			return
		}
	}
	switch req.Method {
	case protocol.MethodExec:
		s.exec(ctx, sess, st, req.Exec)
	case protocol.MethodExecStdin:
		s.execStdin(ctx, sess, st, req.ExecStdin)
	case protocol.MethodWriteFile:
		s.writeFile(st, req.File)
	case protocol.MethodReadFile:
		s.readFile(st, req.File)
	default:
		s.control(st, req)
	}
}

// protocolError reports a protocol violation on one stream; the caller then
// closes the stream. Other streams are not affected.
func (s *Server) protocolError(st *yamux.Stream, err error) {
	if errors.Is(err, io.EOF) {
		return
	}
	s.logf("stream %d: protocol error: %v", st.StreamID(), err)
	sendError(st, protocol.ErrorFrom(err, "", ""))
}

// sendError writes an error frame.
func sendError(w io.Writer, e *protocol.Error) error {
	b, err := protocol.Marshal(e)
	if err != nil {
		return err
	}
	return protocol.WriteFrame(w, protocol.FrameError, b)
}

// sendResponse writes a response frame holding v as JSON.
func sendResponse(w io.Writer, v any) error {
	b, err := protocol.Marshal(v)
	if err != nil {
		return err
	}
	return protocol.WriteFrame(w, protocol.FrameResponse, b)
}
