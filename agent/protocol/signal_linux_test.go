package protocol

import (
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// The table is Linux's numbering (the same on amd64 and arm64).
func TestSignalNamesMatchLinux(t *testing.T) {
	for n, name := range SignalNames {
		if n == 0 {
			continue
		}
		if got := unix.SignalName(syscall.Signal(n)); got != name {
			t.Errorf("signal %d: table says %s, x/sys/unix %s", n, name, got)
		}
		if SignalNumber(name) != n {
			t.Errorf("SignalNumber(%s) = %d, want %d", name, SignalNumber(name), n)
		}
	}
	for _, bad := range []string{"", "TERM", "sigterm", "SIGRTMIN+1", "SIG", "SIGFOO"} {
		if SignalNumber(bad) != 0 {
			t.Errorf("SignalNumber(%q) = %d, want 0", bad, SignalNumber(bad))
		}
	}
}
