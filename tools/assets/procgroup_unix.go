//go:build unix

package main

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// inProcessGroup makes cmd, made with exec.CommandContext, start in a
// process group of its own and kills the whole group (SIGKILL) when the
// context is done: make's compilers and shells die with it, where
// killing make alone leaves them running. Its output is given up
// waitDelay after that, should a process that left the group hold it.
func inProcessGroup(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.Cancel = func() error {
		// The group's ID is its leader's PID, cmd's.
		err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		if errors.Is(err, syscall.ESRCH) {
			return os.ErrProcessDone
		}
		return err
	}
	cmd.WaitDelay = waitDelay
}

// waitDelay is how long a cancelled command's output is waited for after
// its process group is killed.
const waitDelay = 10 * time.Second
