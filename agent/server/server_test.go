//go:build linux

package server_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/supermachine-go/supermachine-kernel/agent"
	"github.com/supermachine-go/supermachine-kernel/agent/protocol"
	"github.com/supermachine-go/supermachine-kernel/agent/server"
)

func startServer(t testing.TB) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	logf := t.Logf
	if _, ok := t.(*testing.F); ok {
		logf = func(string, ...any) {} // fuzz targets may not log through f
	}
	srv := server.New(server.Config{Version: agent.Version, Logf: logf})
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(l) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return sock
}

// rawSession does the handshake by hand and returns a yamux client session,
// so that tests can send what a real client never would.
func rawSession(t testing.TB, sock string) *yamux.Session {
	t.Helper()
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []protocol.HelloKind{protocol.KindHello, protocol.KindStart} {
		protocol.WriteHello(conn, protocol.Hello{Kind: k, Version: protocol.Version, Nonce: 1})
		h, err := protocol.ReadHello(conn)
		if err != nil {
			t.Fatal(err)
		}
		if want := map[protocol.HelloKind]protocol.HelloKind{protocol.KindHello: protocol.KindAck, protocol.KindStart: protocol.KindGo}[k]; h.Kind != want {
			t.Fatalf("got %v, want %v", h.Kind, want)
		}
	}
	cfg := yamux.DefaultConfig()
	cfg.LogOutput = io.Discard
	sess, err := yamux.Client(conn, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	return sess
}

// ping checks that a fresh, well-behaved client is served.
func ping(t *testing.T, sock string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := agent.Dial(ctx, "unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestMalformedInput(t *testing.T) {
	sock := startServer(t)
	sess := rawSession(t, sock)
	tests := []struct {
		name string
		send []byte
		want string
	}{
		{"oversized length", protocol.AppendFrameHeader(nil, protocol.FrameRequest, protocol.MaxFrameSize+1), "frame too large"},
		{"huge length", []byte{byte(protocol.FrameRequest), 0xff, 0xff, 0xff, 0xff}, "frame too large"},
		{"unknown frame type", append(protocol.AppendFrameHeader(nil, 99, 2), "{}"...), "unknown frame type"},
		{"not a request", append(protocol.AppendFrameHeader(nil, protocol.FrameStdin, 2), "hi"...), "expected a request frame"},
		{"bad JSON", append(protocol.AppendFrameHeader(nil, protocol.FrameRequest, 5), "{nope"...), "malformed"},
		{"unknown method", append(protocol.AppendFrameHeader(nil, protocol.FrameRequest, 19), `{"method":"launch"}`...), "unknown method"},
		{"bad exec", append(protocol.AppendFrameHeader(nil, protocol.FrameRequest, 36), `{"method":"exec","exec":{"args":[]}}`...), "empty argv"},
		{"relative path", append(protocol.AppendFrameHeader(nil, protocol.FrameRequest, 50), `{"method":"write_file","file":{"path":"etc/motd"}}`...), "not an absolute file path"},
		{"exec_stdin of nothing", append(protocol.AppendFrameHeader(nil, protocol.FrameRequest, 49), `{"method":"exec_stdin","exec_stdin":{"stream":1}}`...), "no running exec"},
		{"truncated", append(protocol.AppendFrameHeader(nil, protocol.FrameRequest, 100), "{"...), "truncated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := sess.OpenStream()
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			st.Write(tt.send)
			if tt.name == "truncated" {
				st.Close() // half-close: the server sees EOF mid-frame
			}
			typ, p, err := protocol.ReadFrame(st, nil)
			if err != nil {
				t.Fatal(err)
			}
			if typ != protocol.FrameError {
				t.Fatalf("got %v frame", typ)
			}
			e := protocol.DecodeError(p)
			if !strings.Contains(e.Message, tt.want) {
				t.Fatalf("error %q, want %q", e.Message, tt.want)
			}
			want := protocol.CodeProtocol
			switch tt.name {
			case "unknown method":
				want = protocol.CodeUnknownMethod
			case "bad exec", "relative path":
				want = protocol.CodeInvalid
			case "exec_stdin of nothing":
				want = protocol.CodeNotFound
			}
			if e.Code != want {
				t.Fatalf("code %q, want %q", e.Code, want)
			}
			// The server closes the stream after the error.
			if _, _, err := protocol.ReadFrame(st, nil); err != io.EOF {
				t.Fatalf("after error: %v", err)
			}
		})
	}
	// The same session still works for a good request.
	st, _ := sess.OpenStream()
	protocol.WriteFrame(st, protocol.FrameRequest, []byte(`{"method":"ping"}`))
	if typ, _, err := protocol.ReadFrame(st, nil); err != nil || typ != protocol.FrameResponse {
		t.Fatalf("ping on the same session: %v %v", typ, err)
	}
	st.Close()
	// And other clients are served.
	ping(t, sock)
}

func TestMalformedExecFrames(t *testing.T) {
	sock := startServer(t)
	sess := rawSession(t, sock)
	st, _ := sess.OpenStream()
	protocol.WriteFrame(st, protocol.FrameRequest, []byte(`{"method":"exec","exec":{"args":["sleep","1000"],"stdin":true}}`))
	typ, _, err := protocol.ReadFrame(st, nil)
	if err != nil || typ != protocol.FrameResponse {
		t.Fatalf("start: %v %v", typ, err)
	}
	// An oversized frame in the middle of an exec: the exec is killed.
	st.Write(protocol.AppendFrameHeader(nil, protocol.FrameStdin, 1<<30))
	typ, p, err := protocol.ReadFrame(st, nil)
	if err != nil || typ != protocol.FrameError {
		t.Fatalf("got %v %v", typ, err)
	}
	if e := protocol.DecodeError(p); e.Code != protocol.CodeProtocol || !strings.Contains(e.Message, "frame too large") || !strings.Contains(e.Message, "killed") {
		t.Fatalf("error %+v", e)
	}
	ping(t, sock)
}

func TestBadHandshake(t *testing.T) {
	sock := startServer(t)
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	b, _ := io.ReadAll(conn)
	if !bytes.Contains(b, []byte("bad handshake magic")) {
		t.Fatalf("reply %q", b)
	}
	// Start without hello.
	conn2, _ := net.Dial("unix", sock)
	defer conn2.Close()
	protocol.WriteHello(conn2, protocol.Hello{Kind: protocol.KindStart, Version: protocol.Version})
	b, _ = io.ReadAll(conn2)
	if !bytes.Contains(b, []byte("start before hello")) {
		t.Fatalf("reply %q", b)
	}
	// A session-level violation (garbage instead of yamux) closes only
	// that connection.
	sess := rawSession(t, sock)
	_ = sess
	conn3, _ := net.Dial("unix", sock)
	defer conn3.Close()
	protocol.WriteHello(conn3, protocol.Hello{Kind: protocol.KindHello, Version: protocol.Version, Nonce: 5})
	protocol.ReadHello(conn3)
	protocol.WriteHello(conn3, protocol.Hello{Kind: protocol.KindStart, Version: protocol.Version, Nonce: 5})
	protocol.ReadHello(conn3)
	conn3.Write([]byte{0, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9})
	conn3.SetReadDeadline(time.Now().Add(time.Minute))
	if _, err := io.ReadAll(conn3); err != nil {
		t.Fatalf("garbage session: %v", err)
	}
	if _, err := sess.Ping(); err != nil {
		t.Fatalf("other session broken: %v", err)
	}
	ping(t, sock)
}

func TestUnknownSignalIgnored(t *testing.T) {
	sock := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := agent.Dial(ctx, "unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cmd := c.Command(ctx, "sleep", "1000")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cmd.Signal(agent.Signal("SIGNOPE"))
	cmd.Signal(agent.Signal("KILL"))
	var ee *agent.ExitError
	if err := cmd.Wait(); !errors.As(err, &ee) || ee.Signal() != "SIGKILL" {
		t.Fatalf("%v", err)
	}
}

// exec_stdin attaches one stream to a running exec's stdin: its data reaches
// the process, a second attach is refused with busy, and one for a stream
// without a running exec with stdin gets not_found.
func TestExecStdinStream(t *testing.T) {
	sess := rawSession(t, startServer(t))
	st, err := sess.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	b, _ := protocol.Marshal(&protocol.Request{Method: protocol.MethodExec, Exec: &protocol.ExecRequest{
		Args: []string{"cat"}, Stdin: true, Stdout: true}})
	protocol.WriteFrame(st, protocol.FrameRequest, b)
	if typ, p, err := protocol.ReadFrame(st, nil); err != nil || typ != protocol.FrameResponse {
		t.Fatalf("exec: %v %q %v", typ, p, err)
	}
	attach := func(stream uint32) (*yamux.Stream, *protocol.Error) {
		t.Helper()
		in, err := sess.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := protocol.Marshal(&protocol.Request{Method: protocol.MethodExecStdin, ExecStdin: &protocol.ExecStdinRequest{Stream: stream}})
		protocol.WriteFrame(in, protocol.FrameRequest, b)
		typ, p, err := protocol.ReadFrame(in, nil)
		if err != nil {
			t.Fatal(err)
		}
		if typ == protocol.FrameError {
			return in, protocol.DecodeError(p)
		}
		return in, nil
	}
	in, perr := attach(st.StreamID())
	if perr != nil {
		t.Fatalf("attach: %v", perr)
	}
	if _, perr := attach(st.StreamID()); perr == nil || perr.Code != protocol.CodeBusy {
		t.Fatalf("second attach: %v, want code busy", perr)
	}
	if _, perr := attach(st.StreamID() + 2); perr == nil || perr.Code != protocol.CodeNotFound {
		t.Fatalf("attach to no exec: %v, want code not_found", perr)
	}
	protocol.WriteFrame(in, protocol.FrameStdin, []byte("through the stdin stream\n"))
	protocol.WriteFrame(in, protocol.FrameStdinEOF, nil)
	in.Close()
	var out bytes.Buffer
	for {
		typ, p, err := protocol.ReadFrame(st, nil)
		if err != nil {
			t.Fatalf("reading the exec stream: %v (output so far %q)", err, out.String())
		}
		if typ == protocol.FrameStdout {
			out.Write(p)
			continue
		}
		if typ != protocol.FrameExit {
			t.Fatalf("unexpected %v frame", typ)
		}
		x, err := protocol.DecodeExit(p)
		if err != nil || x.ExitCode != 0 || out.String() != "through the stdin stream\n" {
			t.Fatalf("exit %+v %v, output %q", x, err, out.String())
		}
		return
	}
}
