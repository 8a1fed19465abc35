//go:build linux

package server_test

import (
	"errors"
	"io"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/supermachine-go/supermachine-kernel/agent/protocol"
)

// FuzzExecStream drives the server's exec stream state machine with
// arbitrary client bytes after a valid exec request (cat, on pipes or on a
// terminal), then ends the client's side. Whatever the client sent, the
// server answers with the exec response, then only output frames, then
// exactly one final frame (exit, or error for a protocol violation) and
// the end of the stream; and the process is gone.
func FuzzExecStream(f *testing.F) {
	frame := func(t protocol.FrameType, p string) []byte {
		return append(protocol.AppendFrameHeader(nil, t, len(p)), p...)
	}
	cat := func(bs ...[]byte) []byte {
		var out []byte
		for _, b := range bs {
			out = append(out, b...)
		}
		return out
	}
	f.Add(false, cat(frame(protocol.FrameStdin, "hello\n"), frame(protocol.FrameStdinEOF, "")))
	f.Add(true, cat(frame(protocol.FrameResize, "\x00\x28\x00\x50"), frame(protocol.FrameStdin, "hi\r"), frame(protocol.FrameStdinEOF, "")))
	f.Add(false, frame(protocol.FrameSignal, "SIGTERM"))
	f.Add(false, frame(protocol.FrameSignal, "sigterm"))
	f.Add(false, cat(frame(protocol.FrameStdinEOF, ""), frame(protocol.FrameStdin, "late")))
	f.Add(false, frame(protocol.FrameStdout, "wrong way"))
	f.Add(true, []byte{byte(protocol.FrameResize), 0, 0, 0, 3, 1, 2, 3})
	f.Add(false, []byte{99, 0, 0, 0, 0})
	f.Add(false, []byte{byte(protocol.FrameStdin), 0, 0, 1})
	f.Add(false, []byte{})
	sess := rawSession(f, startServer(f))
	f.Fuzz(func(t *testing.T, tty bool, in []byte) {
		st, err := sess.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		st.SetDeadline(time.Now().Add(time.Minute))
		req := &protocol.Request{Method: protocol.MethodExec, Exec: &protocol.ExecRequest{
			Args: []string{"cat"}, TTY: tty, Stdin: true, Stdout: true, Stderr: true, TimeoutNS: int64(30 * time.Second),
		}}
		b, _ := protocol.Marshal(req)
		if err := protocol.WriteFrame(st, protocol.FrameRequest, b); err != nil {
			t.Fatal(err)
		}
		typ, p, err := protocol.ReadFrame(st, nil)
		if err != nil || typ != protocol.FrameResponse {
			t.Fatalf("first frame: %v %q %v", typ, p, err)
		}
		var started protocol.ExecStarted
		if err := protocol.Unmarshal(p, &started); err != nil || started.Pid <= 0 {
			t.Fatalf("response %q: %v", p, err)
		}
		st.Write(in)
		st.Close() // the client is done: the server cancels what still runs

		var final protocol.FrameType
		for {
			typ, p, err := protocol.ReadFrame(st, nil)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("reading the server's frames: %v", err)
			}
			if final != 0 {
				t.Fatalf("%v frame after the final %v frame", typ, final)
			}
			switch typ {
			case protocol.FrameStdout, protocol.FrameStderr:
			case protocol.FrameExit:
				if _, err := protocol.DecodeExit(p); err != nil {
					t.Fatalf("exit frame %q: %v", p, err)
				}
				final = typ
			case protocol.FrameError:
				if e := protocol.DecodeError(p); e.Code != protocol.CodeProtocol {
					t.Fatalf("error frame with code %q: %s", e.Code, e.Message)
				}
				final = typ
			default:
				t.Fatalf("unexpected %v frame from the server", typ)
			}
		}
		if final == 0 {
			t.Fatal("the stream ended without an exit or error frame")
		}
		deadline := time.Now().Add(30 * time.Second)
		for syscall.Kill(started.Pid, 0) == nil && !zombie(started.Pid) {
			if time.Now().After(deadline) {
				t.Fatalf("pid %d still alive after the stream ended", started.Pid)
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
}

// zombie reports whether pid is a zombie (exited, not yet reaped).
func zombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == ')' {
			return i+2 < len(b) && b[i+2] == 'Z'
		}
	}
	return false
}
