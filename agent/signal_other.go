//go:build !unix

package agent

import "os"

// hostSignalName names a host signal. Off Unix, os.Kill and os.Interrupt are
// the only portable signals; use the Signal type for others.
func hostSignalName(sig os.Signal) string {
	switch sig {
	case os.Kill:
		return "SIGKILL"
	case os.Interrupt:
		return "SIGINT"
	}
	return ""
}
