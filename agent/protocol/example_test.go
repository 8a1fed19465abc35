package protocol_test

import (
	"fmt"

	"github.com/supermachine-go/supermachine-kernel/agent/protocol"
)

func ExampleSignalNumber() {
	fmt.Println(protocol.SignalNumber("SIGTERM"), protocol.SignalNumber("SIGUSR1"))
	// Names are exact: these are not signal frame payloads.
	fmt.Println(protocol.SignalNumber("TERM"), protocol.SignalNumber("sigterm"), protocol.SignalNumber("SIGRTMIN+1"))
	// Output:
	// 15 10
	// 0 0 0
}
