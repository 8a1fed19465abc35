package microvm

import (
	"bytes"
	"runtime"
	"sync"
)

func runtimeArch() string { return runtime.GOARCH }

// lockedBuffer is a bytes.Buffer safe for the VMM's writer goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  *bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
