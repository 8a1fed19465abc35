//go:build linux

package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/supermachine-go/supermachine-kernel/agent/protocol"
)

// ErrHangup is what a long-lived stream's Read returns (once) when the far
// end hung up but may come back, as a virtio-serial port does when the host
// closes its side. [Server.ServeStream] then ends the current session,
// killing its execs, and waits for the next client on the same stream.
var ErrHangup = errors.New("peer hung up")

// ServeStream serves a long-lived stream, such as a virtio-serial port, on
// which one host client after another may connect. For each client it scans
// the stream for a handshake message (skipping leftovers of the previous
// session), runs the handshake and a yamux session, and when that session
// ends (the host closed its side and Read returned [ErrHangup], a new
// client's handshake message broke the stale session, or the yamux
// keepalive failed) it goes back to scanning. It returns when rwc fails
// with any other error (io.EOF included) or ctx is done, and closes rwc.
func (s *Server) ServeStream(ctx context.Context, rwc io.ReadWriteCloser) error {
	if !s.track(rwc, true) {
		rwc.Close()
		return ErrServerClosed
	}
	defer s.track(rwc, false)
	m := &streamMux{rwc: rwc, ch: make(chan []byte, 4)}
	go m.pump()
	stop := context.AfterFunc(ctx, func() { rwc.Close() })
	defer stop()
	defer rwc.Close()
	for {
		v := m.view()
		err := s.handshake(v, true)
		if err != nil {
			v.Close()
			if errors.Is(err, ErrHangup) || errors.Is(err, protocol.ErrMalformed) {
				continue
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if s.isClosed() {
				return ErrServerClosed
			}
			return err
		}
		s.debugf("stream: client connected")
		watch := &helloWatch{}
		v.watch = watch
		err = s.serveSession(&skipHellos{ReadWriteCloser: v}, true, func(sess *yamux.Session) {
			// A new client's hello inside the session: if the session is
			// stuck (the old client died in the middle of a frame, whose
			// payload now swallows the new client's bytes), it no longer
			// answers pings. End it then, so that the new client's next
			// hello is read by the handshake scanner.
			var probing atomic.Bool
			watch.setFound(func() {
				if probing.Swap(true) {
					return
				}
				go func() {
					defer probing.Store(false)
					if !s.probe(sess, probeTimeout) {
						s.logf("stream: a new client says hello and the session does not answer pings: ending it")
						sess.Close()
					}
				}()
			})
		})
		v.Close()
		s.debugf("stream: session ended: %v", err)
	}
}

// streamMux lets successive consumers (handshake scanner, yamux session,
// scanner again, ...) read one stream. A pump goroutine owns the reads; a
// consumer reads through a view, and closing the view unblocks its reader
// without closing the stream.
type streamMux struct {
	rwc  io.ReadWriteCloser
	ch   chan []byte // chunks; nil chunk = hangup; closed after err is set
	err  error
	rmu  sync.Mutex // held by the reading view
	left []byte
	wmu  sync.Mutex
}

func (m *streamMux) pump() {
	for {
		buf := make([]byte, 64<<10)
		n, err := m.rwc.Read(buf)
		if n > 0 {
			m.ch <- buf[:n]
		}
		if errors.Is(err, ErrHangup) {
			m.ch <- nil
			continue
		}
		if err != nil {
			m.err = err
			close(m.ch)
			return
		}
	}
}

func (m *streamMux) view() *streamView {
	return &streamView{m: m, closed: make(chan struct{})}
}

type streamView struct {
	m      *streamMux
	closed chan struct{}
	once   sync.Once
	watch  *helloWatch // if set, sees every byte read
}

var errViewClosed = errors.New("stream session closed")

func (v *streamView) Read(p []byte) (int, error) {
	m := v.m
	m.rmu.Lock()
	defer m.rmu.Unlock()
	select {
	case <-v.closed:
		return 0, errViewClosed
	default:
	}
	if len(m.left) == 0 {
		select {
		case b, ok := <-m.ch:
			if !ok {
				return 0, m.err
			}
			if b == nil {
				v.Close()
				return 0, ErrHangup
			}
			m.left = b
		case <-v.closed:
			return 0, errViewClosed
		}
	}
	n := copy(p, m.left)
	m.left = m.left[n:]
	if v.watch != nil {
		v.watch.scan(p[:n])
	}
	return n, nil
}

// probeTimeout is how long a session on a long-lived stream has to answer
// a ping after a new client's hello showed up in it.
const probeTimeout = 2 * time.Second

// probe pings sess and reports whether it answered within d.
func (s *Server) probe(sess *yamux.Session, d time.Duration) bool {
	done := make(chan error, 1)
	go func() {
		_, err := sess.Ping()
		done <- err
	}()
	select {
	case err := <-done:
		return err == nil
	case <-time.After(d):
		return false
	case <-sess.CloseChan():
		return true // ended anyway
	}
}

// helloWatch looks for the start of a client hello (magic, kind 'H',
// protocol version) in the bytes of a session, across reads.
type helloWatch struct {
	tail  []byte // the last len(helloPrefix)-1 bytes seen
	found atomic.Pointer[func()]
}

// setFound sets what to do when a hello shows up.
func (w *helloWatch) setFound(f func()) { w.found.Store(&f) }

var helloPrefix = append(protocol.Magic[:], byte(protocol.KindHello), protocol.Version)

func (w *helloWatch) scan(p []byte) {
	k := len(helloPrefix) - 1
	var edge [2 * 8]byte // the tail and the start of p: a prefix split across reads
	e := append(append(edge[:0], w.tail...), p[:min(len(p), k)]...)
	if bytes.Contains(e, helloPrefix) || bytes.Contains(p, helloPrefix) {
		if f := w.found.Load(); f != nil {
			(*f)()
		}
	}
	if len(p) >= k {
		w.tail = append(w.tail[:0], p[len(p)-k:]...)
	} else {
		w.tail = append(w.tail, p...)
		w.tail = w.tail[len(w.tail)-min(len(w.tail), k):]
	}
}
func (v *streamView) Write(p []byte) (int, error) {
	select {
	case <-v.closed:
		return 0, errViewClosed
	default:
	}
	v.m.wmu.Lock()
	defer v.m.wmu.Unlock()
	return v.m.rwc.Write(p)
}

func (v *streamView) Close() error {
	v.once.Do(func() { close(v.closed) })
	return nil
}
