// Package tail keeps the last lines of a stream in bounded memory, for
// error reports about a process whose output may never end (a guest
// console, QEMU's or virtiofsd's messages). It is safe for concurrent use:
// one goroutine may write while others read.
package tail

import (
	"io"
	"strings"
	"sync"
)

// MaxLineLen is the longest line kept; longer lines keep their start and
// end with "…" between.
const MaxLineLen = 4096

// Lines is an io.Writer that keeps the last lines written to it, and
// passes everything on to another writer if it has one.
type Lines struct {
	mu      sync.Mutex
	fwd     io.Writer
	ring    []string // the last complete lines, oldest at start
	start   int      // index of the oldest line in ring once it is full
	partial []byte   // the line being written, at most MaxLineLen bytes
	cut     bool     // partial lost its middle
}

// New returns a Lines keeping the last n lines (at least 1); fwd, if not
// nil, receives everything written.
func New(n int, fwd io.Writer) *Lines {
	return &Lines{fwd: fwd, ring: make([]string, 0, max(n, 1))}
}

// Write keeps the lines of p and passes p on. It never fails: an error of
// the forward writer is not the writer's problem here (QEMU must not
// block on a caller's broken writer), so it is dropped.
func (l *Lines) Write(p []byte) (int, error) {
	n := len(p)
	if l.fwd != nil {
		l.fwd.Write(p)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for len(p) > 0 {
		i := strings.IndexByte(string(p), '\n')
		if i < 0 {
			l.add(p)
			break
		}
		l.add(p[:i])
		l.push()
		p = p[i+1:]
	}
	return n, nil
}

// add appends b to the partial line, keeping at most MaxLineLen bytes:
// the first half and the latest bytes.
func (l *Lines) add(b []byte) {
	l.partial = append(l.partial, b...)
	if len(l.partial) > MaxLineLen {
		half := MaxLineLen / 2
		copy(l.partial[half:], l.partial[len(l.partial)-(MaxLineLen-half):])
		l.partial = l.partial[:MaxLineLen]
		l.cut = true
	}
}

// push ends the partial line.
func (l *Lines) push() {
	s := strings.TrimSuffix(string(l.partial), "\r")
	if l.cut {
		half := MaxLineLen / 2
		s = s[:half] + "…" + s[half:]
	}
	l.partial, l.cut = l.partial[:0], false
	if len(l.ring) < cap(l.ring) {
		l.ring = append(l.ring, s)
		return
	}
	l.ring[l.start] = s
	l.start = (l.start + 1) % len(l.ring)
}

// Lines returns the kept lines, oldest first, with the unfinished last
// line if there is one.
func (l *Lines) Lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]string, 0, len(l.ring)+1)
	out = append(out, l.ring[l.start:]...)
	out = append(out, l.ring[:l.start]...)
	if len(l.partial) > 0 {
		out = append(out, string(l.partial))
	}
	return out
}

// String returns the kept lines joined by newlines, each complete line
// ending with one.
func (l *Lines) String() string {
	l.mu.Lock()
	partial := len(l.partial) > 0
	l.mu.Unlock()
	lines := l.Lines()
	if len(lines) == 0 {
		return ""
	}
	s := strings.Join(lines, "\n")
	if !partial {
		s += "\n"
	}
	return s
}
