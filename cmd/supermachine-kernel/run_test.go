package main

import (
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// The window-size relay resizes on each signal and ends when stopped:
// no goroutine is left per command.
func TestRelayResizesEnds(t *testing.T) {
	before := runtime.NumGoroutine()
	winch := make(chan os.Signal, 1)
	resized := make(chan struct{}, 1)
	stop := relayResizes(winch, func() { resized <- struct{}{} })
	winch <- syscall.SIGWINCH
	select {
	case <-resized:
	case <-time.After(10 * time.Second):
		t.Fatal("no resize within 10 s of the signal")
	}
	stop()
	if after := runtime.NumGoroutine(); after > before {
		t.Fatalf("%d goroutines before the relay, %d after it stopped", before, after)
	}
}
