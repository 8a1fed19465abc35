//go:build linux

package pid1

import (
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Reaper reaps every child of the process: its own children and, when the
// process is PID 1 or a child subreaper, the orphans the kernel re-parents
// to it. It calls wait4(-1) whenever SIGCHLD arrives (and every few seconds,
// in case a signal was coalesced away) and hands the status of each child
// started by [Reaper.StartProcess] to that child's wait function; statuses
// of other processes are discarded, which is what reaping them means.
//
// StartProcess holds the reaper's lock from before fork until the new pid is
// registered, and the reaper holds the same lock while it calls wait4, so a
// child that exits at once can never be reaped before it is registered.
//
// A process that uses a Reaper must start every child through it: os/exec
// and os.StartProcess wait for their children themselves and would race
// with it.
type Reaper struct {
	mu      sync.Mutex
	waiting map[int]chan exitInfo
	reaped  int // number of unregistered processes reaped, for tests and logs
	kick    chan os.Signal
}

type exitInfo struct {
	status syscall.WaitStatus
	rusage syscall.Rusage
}

// NewReaper starts a reaper goroutine for the calling process and returns
// it. Only one Reaper should exist in a process.
func NewReaper() *Reaper {
	r := &Reaper{waiting: make(map[int]chan exitInfo), kick: make(chan os.Signal, 1)}
	signal.Notify(r.kick, unix.SIGCHLD)
	go r.loop()
	return r
}

// SetSubreaper makes the calling process a child subreaper
// (PR_SET_CHILD_SUBREAPER): orphaned descendants are re-parented to it
// instead of to PID 1. PID 1 needs no such call.
func SetSubreaper() error {
	return os.NewSyscallError("prctl", unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0))
}

func (r *Reaper) loop() {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-r.kick:
		case <-t.C:
		}
		r.reap()
	}
}

func (r *Reaper) reap() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		var ws syscall.WaitStatus
		var ru syscall.Rusage
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, &ru)
		if err == syscall.EINTR {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		if ch, ok := r.waiting[pid]; ok {
			delete(r.waiting, pid)
			ch <- exitInfo{ws, ru}
		} else {
			r.reaped++
		}
	}
}

// Reaped returns how many processes not started by StartProcess (orphans)
// the reaper has reaped.
func (r *Reaper) Reaped() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reaped
}

// StartProcess starts a process like syscall.ForkExec and registers it with
// the reaper. The returned wait function blocks until the process exits and
// returns its status and resource usage; call it exactly once.
func (r *Reaper) StartProcess(path string, argv []string, attr *syscall.ProcAttr) (int, func() (syscall.WaitStatus, syscall.Rusage, error), error) {
	r.mu.Lock()
	pid, err := syscall.ForkExec(path, argv, attr)
	if err != nil {
		r.mu.Unlock()
		return 0, nil, err
	}
	ch := make(chan exitInfo, 1)
	r.waiting[pid] = ch
	r.mu.Unlock()
	wait := func() (syscall.WaitStatus, syscall.Rusage, error) {
		x := <-ch
		return x.status, x.rusage, nil
	}
	return pid, wait, nil
}
