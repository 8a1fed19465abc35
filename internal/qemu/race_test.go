package qemu

import (
	"errors"
	"testing"
)

// fail may run (QEMU exited, an accelerator message) while the QMP
// watcher records the run state QEMU stopped the VM in; under -race
// this shows the state is shared safely, and once the stop is seen the
// verdict uses it.
func TestFailWhileStopping(t *testing.T) {
	for range 20 {
		vm := &VM{accel: KVM, stopped: make(chan struct{}), console: newConsoleWatch(nil), stderr: newStderrWatch(nil)}
		vm.console.Write([]byte("guest output\n"))
		go vm.markStopped("internal-error")
		vm.fail("waiting for the agent", ErrExited, "QEMU exited", nil)
		<-vm.stopped
		e := vm.fail("waiting for the agent", ErrStopped, "stopped", nil)
		if !e.AccelFault || !errors.Is(e, ErrAccel) {
			t.Fatalf("run state internal-error not taken as the accelerator's fault: %+v", e)
		}
	}
}
