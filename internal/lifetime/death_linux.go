package lifetime

import (
	"os"
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"
)

// setDeathSignal asks the kernel to SIGKILL cmd's process when the thread
// that forks it exits (see spawnerLoop: it never does before the process).
func setDeathSignal(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}

// DieWithParent asks the kernel to send sig to this process when its
// parent dies, so that what it started is torn down as for that signal.
// The kernel ties this to the parent thread that forked this process;
// a parent that forks from a thread it then ends (a Go program starting
// this one from a goroutine locked to its thread that returns) makes the
// signal come early. If the parent is already gone, sig is sent at once.
func DieWithParent(sig syscall.Signal) error {
	ppid := os.Getppid()
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(sig), 0, 0, 0); err != nil {
		return os.NewSyscallError("prctl PR_SET_PDEATHSIG", err)
	}
	if os.Getppid() != ppid {
		return syscall.Kill(os.Getpid(), sig)
	}
	return nil
}
