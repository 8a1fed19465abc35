//go:build linux

package server

import "syscall"

// Starter starts processes for exec requests. The wait function it returns
// blocks until the process exits and returns its wait status and resource
// usage; the server calls it exactly once.
//
// The default starter waits for each child with wait4(pid). A PID-1 agent
// must instead use a starter that cooperates with its zombie reaper, such as
// *pid1.Reaper, whose StartProcess has this signature.
type Starter interface {
	StartProcess(path string, argv []string, attr *syscall.ProcAttr) (pid int, wait func() (syscall.WaitStatus, syscall.Rusage, error), err error)
}

type directStarter struct{}

func (directStarter) StartProcess(path string, argv []string, attr *syscall.ProcAttr) (int, func() (syscall.WaitStatus, syscall.Rusage, error), error) {
	pid, err := syscall.ForkExec(path, argv, attr)
	if err != nil {
		return 0, nil, err
	}
	return pid, func() (syscall.WaitStatus, syscall.Rusage, error) {
		var ws syscall.WaitStatus
		var ru syscall.Rusage
		for {
			_, err := syscall.Wait4(pid, &ws, 0, &ru)
			if err == syscall.EINTR {
				continue
			}
			return ws, ru, err
		}
	}, nil
}
