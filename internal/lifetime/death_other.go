//go:build !linux

package lifetime

import (
	"os/exec"
	"syscall"
)

// No parent-death signal outside Linux: KillChildren does the job on the
// way out.
func setDeathSignal(*exec.Cmd) {}

// DieWithParent does nothing outside Linux, which alone has a
// parent-death signal.
func DieWithParent(syscall.Signal) error { return nil }
