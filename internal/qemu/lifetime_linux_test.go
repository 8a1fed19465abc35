package qemu

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
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

// A VM keeps the last lines of the console and of QEMU's messages only,
// while the writers the caller gave get all of them.
func TestOutputTailsBounded(t *testing.T) {
	fakeHost(t)
	var n notes
	c := fakeConfig(t, "chatty", "off", &n)
	var console, stderr strings.Builder
	c.Console, c.Stderr = &syncWriter{w: &console}, &syncWriter{w: &stderr}
	vm, _, err := bootFake(t, c)
	if err != nil {
		t.Fatal(err)
	}
	vm.Kill()
	lines := strings.Split(strings.TrimSpace(vm.Console()), "\n")
	if len(lines) != ConsoleLines || !strings.Contains(vm.Console(), "ready") {
		t.Errorf("VM.Console keeps %d lines (want %d, the last ones):\n…%s", len(lines), ConsoleLines, lines[len(lines)-1])
	}
	if got := strings.Count(vm.QEMUOutput(), "\n"); got != StderrLines {
		t.Errorf("VM.QEMUOutput keeps %d lines, want %d", got, StderrLines)
	}
	if got := strings.Count(console.String(), "console line "); got != 5*ConsoleLines {
		t.Errorf("Config.Console got %d lines, want all %d", got, 5*ConsoleLines)
	}
	if got := strings.Count(stderr.String(), "qemu line "); got != 5*ConsoleLines {
		t.Errorf("Config.Stderr got %d lines, want all %d", got, 5*ConsoleLines)
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// A QEMU whose owner died without stopping it (on macOS, which has no
// parent-death signal) quits when the sweep asks it through the QMP
// socket in its temporary directory.
func TestQuitLeftover(t *testing.T) {
	fakeHost(t)
	var n notes
	c := fakeConfig(t, "boots", "off", &n)
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	vm, err := Start(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Kill()
	ents, _ := os.ReadDir(tmp)
	if len(ents) != 1 {
		t.Fatalf("%d entries in TMPDIR, want QEMU's directory", len(ents))
	}
	vm.mon.Disconnect() // as the dead owner's connection is gone
	QuitLeftover(filepath.Join(tmp, ents[0].Name()))
	select {
	case <-vm.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("QEMU still runs 10 s after it was told to quit")
	}
}
