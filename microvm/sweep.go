package microvm

import (
	"sync"

	"github.com/supermachine-go/supermachine-kernel/internal/lifetime"
	"github.com/supermachine-go/supermachine-kernel/internal/qemu"
)

// Sweep removes what VMs of processes that died without tearing down
// (SIGKILL, a crash) left: their temporary directories, and on macOS,
// where no parent-death signal ends it, their QEMU, asked to quit over
// its QMP socket. A directory is left alone while its owner lives. Start
// sweeps once per process; a program may call Sweep earlier, e.g. at
// start-up. It returns the directories it removed.
func Sweep() ([]string, error) { return lifetime.Sweep(qemu.QuitLeftover) }

var sweepOnce sync.Once

// sweepOnceBestEffort sweeps the first time it is called; what cannot be
// removed now is tried again by the next process.
func sweepOnceBestEffort() { sweepOnce.Do(func() { Sweep() }) }
