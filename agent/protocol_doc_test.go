package agent

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/supermachine-go/supermachine-kernel/agent/protocol"
)

// PROTOCOL.md states the client's handshake cadence and keepalive; these
// must be the values the code uses.
func TestProtocolDocMatchesClient(t *testing.T) {
	b, err := os.ReadFile("PROTOCOL.md")
	if err != nil {
		t.Fatal(err)
	}
	// The document wraps lines; compare with single spaces.
	doc := strings.Join(strings.Fields(string(b)), " ")
	for _, want := range []string{
		fmt.Sprintf("The reference client waits %d ms before its first resend, then doubles the wait up to %d ms",
			handshakeRetry.Initial/time.Millisecond, handshakeRetry.Max/time.Millisecond),
		fmt.Sprintf("The reference server pings every 30 s on connection transports and every %d s on serial streams",
			protocol.SerialKeepAlive/time.Second),
		fmt.Sprintf("The reference client pings every %d s by default and declares the session dead when a ping is unanswered within %d s",
			DefaultKeepAlive/time.Second, KeepAliveTimeout/time.Second),
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("PROTOCOL.md does not say %q", want)
		}
	}
	cadence := handshakeRetry
	var waits []time.Duration
	for range 4 {
		waits = append(waits, cadence.Next())
	}
	if waits[1] != 2*waits[0] || waits[3] != handshakeRetry.Max {
		t.Errorf("handshake cadence %v does not double up to %v", waits, handshakeRetry.Max)
	}
}
