//go:build linux

package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/supermachine-go/supermachine-kernel/agent/protocol"
)

// stdinQueueLen bounds the stdin chunks (frames of at most
// protocol.MaxFrameSize bytes) queued for a process that does not read its
// input; beyond it the feeding stream is not read, and yamux flow control
// holds up the client.
const stdinQueueLen = 16

// stdinSink feeds a process's standard input from client frames. Frames go
// through a bounded queue to one writer goroutine, so that the stream they
// come from can be abandoned (process exited, client gone) while a write
// to the process blocks.
type stdinSink struct {
	q        chan []byte   // nil chunk: end of input
	exited   chan struct{} // closed when the process has exited
	mu       sync.Mutex
	eof      bool // end of input queued
	attached bool // an exec_stdin stream is attached
}

func newStdinSink(exited chan struct{}) *stdinSink {
	return &stdinSink{q: make(chan []byte, stdinQueueLen), exited: exited}
}

// run writes queued chunks to w until the end of input or the process's
// exit. On a terminal (tty), the end of input is ^D and w stays open: it
// is the pty master, which the exec closes.
func (k *stdinSink) run(w io.WriteCloser, tty bool) {
	broken := false
	for {
		var b []byte
		select {
		case b = <-k.q:
		case <-k.exited:
			if !tty {
				w.Close()
			}
			return
		}
		switch {
		case b == nil && tty:
			// EOF on a terminal is ^D at the start of a line.
			w.Write([]byte{4})
		case b == nil:
			w.Close()
			return
		case !broken:
			if _, err := w.Write(b); err != nil {
				// The process closed its stdin: drop the rest, as a pipe
				// to a closed reader would.
				broken = true
				if !tty {
					w.Close()
				}
			}
		}
	}
}

// errStdinEnded is returned by frame for data after the end of input.
var errStdinEnded = fmt.Errorf("%w: stdin frame after stdin-eof", protocol.ErrMalformed)

// frame queues a stdin or stdin-eof frame. It waits while the queue is full,
// until the process exits or ctx ends. A nil sink (stdin not attached)
// drops the frames.
func (k *stdinSink) frame(ctx context.Context, t protocol.FrameType, b []byte) error {
	if k == nil {
		return nil
	}
	k.mu.Lock()
	if k.eof {
		k.mu.Unlock()
		return errStdinEnded
	}
	if t == protocol.FrameStdinEOF {
		k.eof = true
		b = nil
	} else if len(b) == 0 {
		k.mu.Unlock()
		return nil // an empty chunk is not the end of input
	}
	k.mu.Unlock()
	select {
	case k.q <- b:
	case <-k.exited:
	case <-ctx.Done():
	}
	return nil
}

// attach marks the sink as fed by an exec_stdin stream; only one may be.
func (k *stdinSink) attach() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.attached || k.eof {
		return false
	}
	k.attached = true
	return true
}

// execKey identifies a running exec: its session and stream.
type execKey struct {
	sess   *yamux.Session
	stream uint32
}

func (s *Server) registerExec(key execKey, k *stdinSink) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.execs[key] = k
}

func (s *Server) unregisterExec(key execKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.execs, key)
}

// execStdin serves an exec_stdin stream: the standard input of the exec on
// stream req.Stream of the same session, as stdin frames ended by
// stdin-eof (or by the end of the stream).
func (s *Server) execStdin(ctx context.Context, sess *yamux.Session, st *yamux.Stream, req *protocol.ExecStdinRequest) {
	s.mu.Lock()
	k := s.execs[execKey{sess, req.Stream}]
	s.mu.Unlock()
	if k == nil {
		sendError(st, &protocol.Error{Code: protocol.CodeNotFound, Op: "exec_stdin",
			Message: fmt.Sprintf("no running exec with stdin on stream %d", req.Stream)})
		return
	}
	if !k.attach() {
		sendError(st, &protocol.Error{Code: protocol.CodeBusy, Op: "exec_stdin",
			Message: fmt.Sprintf("the stdin of the exec on stream %d is already attached or closed", req.Stream)})
		return
	}
	if sendResponse(st, struct{}{}) != nil {
		k.frame(ctx, protocol.FrameStdinEOF, nil)
		return
	}
	// When the process exits, stop reading: the client learns from the
	// exec's exit frame that its input is no longer wanted.
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-k.exited:
			st.SetReadDeadline(time.Now())
		case <-done:
		}
	}()
	bp := getBuf()
	defer putBuf(bp)
	for {
		t, p, err := protocol.ReadFrame(st, *bp)
		if err != nil {
			if errors.Is(err, protocol.ErrMalformed) || errors.Is(err, protocol.ErrFrameTooLarge) || errors.Is(err, protocol.ErrUnknownFrame) {
				s.protocolError(st, err)
			}
			// The end of the stream, or a broken one, ends the input.
			k.frame(ctx, protocol.FrameStdinEOF, nil)
			return
		}
		if t != protocol.FrameStdin && t != protocol.FrameStdinEOF {
			s.protocolError(st, fmt.Errorf("%w: unexpected %v frame on an exec_stdin stream", protocol.ErrMalformed, t))
			k.frame(ctx, protocol.FrameStdinEOF, nil)
			return
		}
		// The payload is queued, so it cannot live in the reused buffer.
		if err := k.frame(ctx, t, append([]byte(nil), p...)); err != nil {
			s.protocolError(st, err)
			return
		}
		if t == protocol.FrameStdinEOF {
			return
		}
	}
}
