package agent

import (
	"errors"
	"io"
	"os"
	"sync"
)

// PipeSize is the size of the buffer each output stream of a command has
// between the connection and the caller (a StdoutPipe reader, or the
// goroutine that copies to Stdout or Stderr): 64 KiB, as a Linux pipe.
// While one stream's buffer has room, the other stream's output keeps
// flowing even if nobody reads this one. Once it is full, the command's
// stream stops being read and its flow control window (StreamWindow)
// holds the process back, as a full pipe would; the other commands and
// calls of the connection go on.
const PipeSize = 64 << 10

// errInvalidWrite is returned when a Stdout or Stderr writer reports
// having written more than it was given (as io.Copy does).
var errInvalidWrite = errors.New("agent: invalid write result")

// outputBuffer is the bounded buffer of one output stream. The exec
// stream's read loop fills it straight from the connection (fill), and the
// caller drains it through Read (StdoutPipe, StderrPipe) or a copy
// goroutine (writeTo). It behaves like the kernel buffer of a pipe: the
// filler waits while it is full, the reader while it is empty; closeWrite
// is the writer's end (EOF once drained), closeRead the reader's (what the
// process still writes is then dropped).
type outputBuffer struct {
	mu   sync.Mutex
	cond sync.Cond
	buf  []byte // PipeSize bytes, allocated by the first fill
	r, n int    // start and length of the unread bytes in buf, a ring
	werr error  // the writer's end: io.EOF after the output ended
	rerr error  // the reader's end: reads fail with it, fills drop data
	drop bool   // fill never waits: what does not fit is dropped
}

func newOutputBuffer() *outputBuffer {
	b := &outputBuffer{}
	b.cond.L = &b.mu
	return b
}

// fill moves the next size bytes of src (a frame's payload) into the
// buffer, waiting for room; after closeRead, or what does not fit once
// dropping, it reads them from src and discards them. It fails only if
// reading src fails.
func (b *outputBuffer) fill(src io.Reader, size int) error {
	for size > 0 {
		b.mu.Lock()
		if b.buf == nil {
			b.buf = make([]byte, PipeSize)
		}
		for b.rerr == nil && !b.drop && b.n == len(b.buf) {
			b.cond.Wait()
		}
		if b.rerr != nil || b.n == len(b.buf) {
			b.mu.Unlock()
			_, err := io.CopyN(io.Discard, src, int64(size))
			return err
		}
		if b.n == 0 {
			b.r = 0 // no reader holds a chunk: start over, for one long run
		}
		// The free space after the unread bytes belongs to the filler
		// alone: read into it without the lock.
		var free []byte
		if w := b.r + b.n; w < len(b.buf) {
			free = b.buf[w:]
		} else {
			free = b.buf[w-len(b.buf) : b.r]
		}
		b.mu.Unlock()
		if len(free) > size {
			free = free[:size]
		}
		// One Read: the copy goroutine can take what came while the
		// rest of the frame is still on its way.
		k, err := src.Read(free)
		size -= k
		if err == io.EOF {
			err = nil
			if size > 0 {
				err = io.ErrUnexpectedEOF
			}
		}
		b.mu.Lock()
		if b.rerr == nil {
			b.n += k
			// Wake the reader at the end of the frame, or once half the
			// buffer is waiting: not for every piece of a large frame.
			if size == 0 || b.n >= len(b.buf)/2 {
				b.cond.Broadcast()
			}
		}
		b.mu.Unlock()
		if err != nil {
			return err
		}
	}
	return nil
}

// Read reads what the buffer holds, waiting for output; it returns io.EOF
// once the output ended and the buffer is empty, and an error after Close.
func (b *outputBuffer) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.n == 0 && b.rerr == nil && b.werr == nil {
		b.cond.Wait()
	}
	if b.rerr != nil {
		return 0, b.rerr
	}
	if b.n == 0 {
		return 0, b.werr
	}
	k := copy(p, b.buf[b.r:min(b.r+b.n, len(b.buf))])
	if k < len(p) && k < b.n {
		k += copy(p[k:], b.buf[:b.n-k])
	}
	b.consume(k)
	return k, nil
}

// consume drops the first k unread bytes; b.mu is held.
func (b *outputBuffer) consume(k int) {
	b.r = (b.r + k) % len(b.buf)
	b.n -= k
	b.cond.Broadcast()
}

// writeTo copies the output to w until it ends, as io.Copy does from an
// OS pipe: a short write fails with io.ErrShortWrite. Bytes are handed to
// w straight from the buffer. After closeRead it returns that error.
func (b *outputBuffer) writeTo(w io.Writer) error {
	for {
		b.mu.Lock()
		for b.n == 0 && b.rerr == nil && b.werr == nil {
			b.cond.Wait()
		}
		if b.rerr != nil {
			err := b.rerr
			b.mu.Unlock()
			return err
		}
		if b.n == 0 {
			b.mu.Unlock()
			return nil // the output ended
		}
		// The unread bytes stay the reader's until consumed: the filler
		// does not touch them while w writes them.
		chunk := b.buf[b.r:min(b.r+b.n, len(b.buf))]
		b.mu.Unlock()
		nw, err := w.Write(chunk)
		if nw < 0 || nw > len(chunk) {
			nw = 0
			if err == nil {
				err = errInvalidWrite
			}
		}
		b.mu.Lock()
		if b.rerr == nil {
			b.consume(nw)
		}
		b.mu.Unlock()
		if err != nil {
			return err
		}
		if nw < len(chunk) {
			return io.ErrShortWrite
		}
	}
}

// closeWrite ends the output: readers get the rest, then io.EOF.
func (b *outputBuffer) closeWrite() {
	b.mu.Lock()
	if b.werr == nil {
		b.werr = io.EOF
	}
	b.cond.Broadcast()
	b.mu.Unlock()
}

// closeRead closes the reader's end: reads fail with err, and the output
// that is still to come is dropped.
func (b *outputBuffer) closeRead(err error) {
	b.mu.Lock()
	if b.rerr == nil {
		b.rerr = err
	}
	b.cond.Broadcast()
	b.mu.Unlock()
}

// dropWhenFull makes fill stop waiting for room: what does not fit is
// dropped from now on.
func (b *outputBuffer) dropWhenFull() {
	b.mu.Lock()
	b.drop = true
	b.cond.Broadcast()
	b.mu.Unlock()
}

// pipeReader is the caller's end of StdoutPipe or StderrPipe.
type pipeReader struct{ *outputBuffer }

// Close closes the pipe: reads then fail, and the output still to come
// is dropped.
func (p pipeReader) Close() error {
	p.closeRead(os.ErrClosed)
	return nil
}
