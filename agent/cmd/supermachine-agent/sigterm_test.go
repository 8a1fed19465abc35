//go:build linux

package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/supermachine-go/supermachine-kernel/agent"
)

// Outside a VM, SIGTERM ends the agent with status 0 after it has killed
// the commands it runs.
func TestSIGTERMOutsideVM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the agent binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "supermachine-agent")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	if out, err := exec.Command(bin, "-h").CombinedOutput(); !strings.Contains(string(out), "usage: supermachine-agent") {
		t.Skipf("cannot execute the built %s binary here (no binfmt_misc for it?): %v", runtime.GOARCH, err)
	}
	sock := filepath.Join(dir, "agent.sock")
	cmd := exec.Command(bin, "-listen-unix", sock, "-vsock-port", "0", "-serial-port", "")
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	waitLine := func(what string) string {
		t.Helper()
		timeout := time.After(time.Minute)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("agent stderr ended before %q", what)
				}
				if strings.Contains(l, what) {
					return l
				}
			case <-timeout:
				t.Fatalf("no %q from the agent within a minute", what)
			}
		}
	}
	waitLine("ready")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := agent.Dial(ctx, "unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sleep := c.Command(ctx, "sleep", "1000")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if l := waitLine("shutting down"); !strings.Contains(l, "killing 1 running commands") {
		t.Errorf("shutdown line %q", l)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("agent exit after SIGTERM: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the agent did not exit within a minute of SIGTERM")
	}
	if syscall.Kill(sleep.Pid(), 0) == nil {
		t.Fatalf("the agent's command (pid %d) survived it", sleep.Pid())
	}
}
