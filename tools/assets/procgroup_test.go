//go:build unix

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/supermachine-go/supermachine-kernel/internal/poll"
)

// A cancelled command dies with every process it started: a shell's
// background child, like make's compilers, does not outlive it.
func TestCancelKillsProcessGroup(t *testing.T) {
	// The shell starts a child, writes its PID to $1 and waits for it.
	const script = `sleep 300 & echo $! > "$1"; wait`
	for _, c := range []struct {
		name string
		run  func(ctx context.Context, pidFile string) error
	}{
		{"runLogged", func(ctx context.Context, pidFile string) error {
			return runLogged(ctx, filepath.Join(t.TempDir(), "log"), os.Environ(), "test", "sh", "-c", script, "sh", pidFile)
		}},
		{"runCmdEnv", func(ctx context.Context, pidFile string) error {
			return runCmdEnv(ctx, t.TempDir(), os.Environ(), "sh", "-c", script, "sh", pidFile)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			pidFile := filepath.Join(t.TempDir(), "pid")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- c.run(ctx, pidFile) }()

			wait, stop := context.WithTimeout(context.Background(), 30*time.Second)
			defer stop()
			var pid int
			err := poll.Until(wait, poll.Fast, "the shell to write its child's PID to "+pidFile, func() (bool, error) {
				b, err := os.ReadFile(pidFile)
				if err != nil {
					return false, err
				}
				pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
				return err == nil, err
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if alive(pid) {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			})
			if !alive(pid) {
				t.Fatalf("the shell's child %d is not running before the cancel", pid)
			}

			cancel()
			select {
			case err := <-done:
				if c.name == "runLogged" && !errors.Is(err, context.Canceled) || err == nil {
					t.Errorf("the cancelled command returned %v", err)
				}
				t.Logf("cancelled: %.200s", err)
			case <-wait.Done():
				t.Fatal("the command did not return within 30 s of its cancel")
			}
			err = poll.Until(wait, poll.Fast, fmt.Sprintf("the shell's child %d to die", pid), func() (bool, error) {
				return !alive(pid), nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

// alive reports whether pid is a running process, not a zombie.
func alive(pid int) bool {
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		return i > 0 && i+2 < len(s) && s[i+2] != 'Z' && s[i+2] != 'X'
	} else if _, serr := os.Stat("/proc/self/stat"); serr == nil {
		return false // /proc exists and has no such process
	}
	return syscall.Kill(pid, 0) == nil
}
