//go:build linux

package agent_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/supermachine-go/supermachine-kernel/agent"
	"github.com/supermachine-go/supermachine-kernel/agent/protocol"
	"github.com/supermachine-go/supermachine-kernel/agent/server"
)

// hybridVsockServer mimics the hybrid-vsock Unix socket of Firecracker and
// Cloud Hypervisor: it reads "CONNECT <port>\n" and, while the guest is
// "booting" (the first eofs connections), closes without answering; then
// it answers reply and, on OK, proxies to the agent at agentSock.
func hybridVsockServer(t *testing.T, agentSock string, eofs int, reply string) (string, *int) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "v.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var mu sync.Mutex
	attempts := new(int)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				line, err := bufio.NewReader(c).ReadString('\n')
				if err != nil || line != "CONNECT 1024\n" {
					t.Errorf("hybrid vsock got %q, %v", line, err)
					return
				}
				mu.Lock()
				*attempts++
				n := *attempts
				mu.Unlock()
				if n <= eofs {
					return // guest not listening yet: EOF
				}
				io.WriteString(c, reply)
				if !strings.HasPrefix(reply, "OK ") {
					return
				}
				a, err := net.Dial("unix", agentSock)
				if err != nil {
					t.Error(err)
					return
				}
				defer a.Close()
				go io.Copy(a, c)
				io.Copy(c, a)
			}()
		}
	}()
	return path, attempts
}

func TestDialHybridVsock(t *testing.T) {
	agentSock := startServer(t, server.Config{})
	ctx := testCtx(t)

	path, attempts := hybridVsockServer(t, agentSock, 0, "OK 1073741824\n")
	c, err := agent.DialHybridVsock(ctx, path, 1024)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if *attempts != 1 {
		t.Fatalf("%d attempts", *attempts)
	}

	// EOF before OK three times (the guest is booting), then success.
	path, attempts = hybridVsockServer(t, agentSock, 3, "OK 42\n")
	c, err = agent.DialHybridVsock(ctx, path, 1024)
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.Command(ctx, "echo", "via", "hybrid").Output()
	if err != nil || string(out) != "via hybrid\n" {
		t.Fatalf("%q %v", out, err)
	}
	c.Close()
	if *attempts != 4 {
		t.Fatalf("%d attempts, want 4", *attempts)
	}

	// A wrong reply is an error, not retried.
	path, attempts = hybridVsockServer(t, agentSock, 0, "ERR no such port\n")
	_, err = agent.DialHybridVsock(ctx, path, 1024)
	if !errors.Is(err, agent.ErrHybridVsock) || !strings.Contains(err.Error(), "ERR no such port") {
		t.Fatalf("wrong reply: %v", err)
	}
	if *attempts != 1 {
		t.Fatalf("wrong reply retried: %d attempts", *attempts)
	}

	// A guest that never listens: the context bounds the retries.
	path, _ = hybridVsockServer(t, agentSock, 1<<30, "")
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := agent.DialHybridVsock(short, path, 1024); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("never listening: %v", err)
	}
}

// switchboard simulates a long-lived serial stream (a virtio-serial port):
// the agent serves one endless stream, host clients attach to it one after
// the other. Bytes the agent writes while no client is attached are lost;
// a client that detaches may leave partial frames behind.
type switchboard struct {
	toAgentR *io.PipeReader
	toAgentW *io.PipeWriter

	mu    sync.Mutex
	cur   *io.PipeWriter // current client's inbound side
	hupCh chan struct{}
}

func newSwitchboard() *switchboard {
	r, w := io.Pipe()
	return &switchboard{toAgentR: r, toAgentW: w, hupCh: make(chan struct{}, 1)}
}

// agentSide is the agent's end of the stream.
func (s *switchboard) agentSide() io.ReadWriteCloser { return (*agentEnd)(s) }

type agentEnd switchboard

func (a *agentEnd) Read(p []byte) (int, error) {
	s := (*switchboard)(a)
	select {
	case <-s.hupCh:
		return 0, server.ErrHangup
	default:
	}
	return s.toAgentR.Read(p)
}

func (a *agentEnd) Write(p []byte) (int, error) {
	s := (*switchboard)(a)
	s.mu.Lock()
	w := s.cur
	s.mu.Unlock()
	if w != nil {
		w.Write(p) // a client that stopped reading does not block the agent forever: pipes are closed on detach
	}
	return len(p), nil
}

func (a *agentEnd) Close() error {
	s := (*switchboard)(a)
	s.toAgentR.Close()
	return nil
}

// attach connects a new host client end.
func (s *switchboard) attach() io.ReadWriteCloser {
	r, w := io.Pipe()
	s.mu.Lock()
	if s.cur != nil {
		s.cur.Close()
	}
	s.cur = w
	s.mu.Unlock()
	return &clientEnd{s: s, r: r, w: w}
}

type clientEnd struct {
	s *switchboard
	r *io.PipeReader
	w *io.PipeWriter
}

func (c *clientEnd) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *clientEnd) Write(p []byte) (int, error) { return c.s.toAgentW.Write(p) }
func (c *clientEnd) Close() error {
	c.s.mu.Lock()
	if c.s.cur == c.w {
		c.s.cur = nil
	}
	c.s.mu.Unlock()
	c.r.Close()
	c.w.Close()
	return nil
}

func TestSerialStreamReconnect(t *testing.T) {
	sb := newSwitchboard()
	srv := server.New(server.Config{Version: agent.Version, Logf: t.Logf})
	ctx := testCtx(t)
	done := make(chan error, 1)
	go func() { done <- srv.ServeStream(ctx, sb.agentSide()) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; err != nil && !errors.Is(err, server.ErrServerClosed) && !errors.Is(err, io.ErrClosedPipe) {
			t.Logf("ServeStream: %v", err)
		}
	})

	connect := func(name string) *agent.Client {
		t.Helper()
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		c, err := agent.NewClient(cctx, sb.attach())
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out, err := c.Command(ctx, "echo", name).Output()
		if err != nil || string(out) != name+"\n" {
			t.Fatalf("%s: %q %v", name, out, err)
		}
		return c
	}

	// 1. A client connects, runs something, and vanishes without a word
	// while a command is running and after sending half a frame.
	c1 := connect("first")
	long := c1.Command(ctx, "sleep", "1000")
	if err := long.Start(); err != nil {
		t.Fatal(err)
	}
	sb.toAgentW.Write([]byte{0, 0, 0}) // a partial yamux header
	sb.mu.Lock()
	sb.cur = nil // the host side goes away; the agent is not told
	sb.mu.Unlock()

	// 2. A new client connects: its hello breaks the stale session (the
	// agent then kills the stale session's commands) and it gets served.
	c2 := connect("second")
	waitGone(t, long.Pid())
	c1.Close()

	// 3. This client goes away and the stream reports a hangup, as a
	// virtio-serial port does when the host closes its side.
	c2.Close()
	sb.hupCh <- struct{}{}
	c3 := connect("third")
	for i := range 5 {
		if out, err := c3.Command(ctx, "echo", fmt.Sprint(i)).Output(); err != nil || string(out) != fmt.Sprintf("%d\n", i) {
			t.Fatalf("third, exec %d: %q %v", i, out, err)
		}
	}
	c3.Close()
}

// A client that dies in the middle of a frame leaves the agent's session
// waiting for the rest of the payload, which swallows the next client's
// hellos. The agent notices a hello in the session, finds that the session
// no longer answers pings, and ends it: the next client gets through in
// about a second rather than after the keepalive gives up.
func TestSerialStreamClientDiesMidFrame(t *testing.T) {
	sb := newSwitchboard()
	srv := server.New(server.Config{Version: agent.Version, Logf: t.Logf})
	ctx := testCtx(t)
	done := make(chan error, 1)
	go func() { done <- srv.ServeStream(ctx, sb.agentSide()) }()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	c1, err := agent.NewClient(ctx, sb.attach())
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	if err := c1.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	// A yamux data frame header announcing 60000 bytes, and 10 of them.
	hdr := []byte{0, 0, 0, 0, 0, 0, 0x03, 0xe9, 0, 0, 0xea, 0x60}
	sb.toAgentW.Write(append(hdr, make([]byte, 10)...))
	sb.mu.Lock()
	sb.cur = nil // the host side goes away; the agent is not told
	sb.mu.Unlock()

	// Well within the keepalive's 15 s (5 s interval, 10 s timeout).
	cctx, cancel := context.WithTimeout(ctx, 8*time.Second)
	defer cancel()
	start := time.Now()
	c2, err := agent.NewClient(cctx, sb.attach())
	if err != nil {
		t.Fatalf("second client: %v", err)
	}
	defer c2.Close()
	if out, err := c2.Command(ctx, "echo", "second").Output(); err != nil || string(out) != "second\n" {
		t.Fatalf("second client: %q %v", out, err)
	}
	t.Logf("second client served %v after the first died mid-frame", time.Since(start).Round(time.Millisecond))
}

func TestVersionMismatch(t *testing.T) {
	ctx := testCtx(t)
	// A client speaking another version is refused by the agent.
	sock := startServer(t, server.Config{})
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	protocol.WriteHello(conn, protocol.Hello{Kind: protocol.KindHello, Version: 99, Nonce: 7})
	h, err := protocol.ReadHello(conn)
	if err != nil || h.Kind != protocol.KindAck || h.Version != protocol.Version || h.Nonce != 7 {
		t.Fatalf("ack: %+v %v", h, err)
	}
	if n, err := conn.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("agent did not close: %d %v", n, err)
	}

	// An agent speaking another version is refused by the client.
	a, b := net.Pipe()
	go func() {
		h, err := protocol.ReadHello(b)
		if err == nil {
			protocol.WriteHello(b, protocol.Hello{Kind: protocol.KindAck, Version: 2, Nonce: h.Nonce})
		}
	}()
	_, err = agent.NewClient(ctx, a)
	if !errors.Is(err, agent.ErrVersionMismatch) || !strings.Contains(err.Error(), "version 2") {
		t.Fatalf("NewClient = %v", err)
	}
}
