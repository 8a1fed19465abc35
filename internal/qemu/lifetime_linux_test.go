package qemu

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"
)

// VM.Kill and the end of the boot's context each leave nothing behind:
// QEMU is dead and its temporary directory (the QMP socket's) is gone
// once Kill returns or Done is closed.
func TestKillAndCancelLeaveNothing(t *testing.T) {
	fakeHost(t)
	for _, how := range []string{"Kill", "cancel"} {
		t.Run(how, func(t *testing.T) {
			var n notes
			c := fakeConfig(t, "boots", "off", &n)
			tmp := t.TempDir()
			t.Setenv("TMPDIR", tmp)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			vm, err := Start(ctx, c)
			if err != nil {
				t.Fatal(err)
			}
			pid := vm.cmd.Process.Pid
			if ents, _ := os.ReadDir(tmp); len(ents) != 1 {
				t.Fatalf("%d entries in TMPDIR while QEMU runs, want its one directory", len(ents))
			}
			if how == "Kill" {
				vm.Kill()
			} else {
				cancel()
				select {
				case <-vm.Done():
				case <-time.After(10 * time.Second):
					t.Fatal("QEMU still runs 10 s after the context ended")
				}
			}
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
				t.Errorf("QEMU (pid %d) is still there", pid)
			}
			if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
				t.Errorf("left in TMPDIR: %v", ents)
			}
		})
	}
}
