//go:build linux

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/supermachine-go/supermachine-kernel/agent"
	"github.com/supermachine-go/supermachine-kernel/internal/reexec"
)

// agentMode is the internal/reexec helper mode in which the test binary
// is the agent: TestMain runs main with the arguments after the binary.
const agentMode = "supermachine-agent"

// TestMain makes the test binary the agent when re-executed in agentMode.
func TestMain(m *testing.M) {
	if os.Getenv(reexec.EnvVar) == agentMode {
		os.Args = append([]string{"supermachine-agent"}, os.Args[1:]...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestAsPID1 runs the agent's main as PID 1 of new PID, mount and network
// namespaces (unshare(1), needs root): the PID-1 code path minus a real
// kernel boot. The agent is this test binary re-executed through
// internal/reexec, so that the test runs under qemu-user too (GOARCH=arm64
// go test -exec qemu-aarch64-static, where the emulator is PID 1). It
// checks the ready line, that lo comes up, that exec works and that
// orphans are reaped, and that reboot ends the namespace (reboot(2) from
// the init of a PID namespace kills that namespace, not the machine).
func TestAsPID1(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for unshare")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("unshare not installed")
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	self, err := reexec.Command(agentMode, "-listen-unix", sock, "-vsock-port", "0", "-serial-port", "")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(unshare, append([]string{"--pid", "--fork", "--kill-child", "--net", "--mount", "--propagation", "private", "--mount-proc",
		self.Path}, self.Args[1:]...)...)
	cmd.Env = self.Env
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	defer func() {
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
		}
	}()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			t.Logf("agent: %s", sc.Text())
			lines <- sc.Text()
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	timeout := time.After(time.Minute)
	for ready := false; !ready; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("agent exited before ready")
			}
			ready = strings.HasPrefix(l, "supermachine-agent "+agent.Version+" ready (unix ") && strings.Contains(l, "uptime=")
		case <-timeout:
			t.Fatal("no ready line")
		}
	}
	go func() {
		for range lines {
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := agent.Dial(ctx, "unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	info, err := c.Info(ctx)
	if err != nil || info.Pid != 1 {
		t.Fatalf("Info: %+v %v", info, err)
	}
	if _, err := exec.LookPath("ip"); err == nil {
		out, err := c.Command(ctx, "ip", "-o", "link", "show", "lo").Output()
		if err != nil || !strings.Contains(string(out), "UP") {
			t.Fatalf("lo: %q %v", out, err)
		}
	}
	// Orphans are re-parented to the agent and reaped; exit codes of the
	// agent's own children stay exact.
	for i := range 10 {
		err := c.Command(ctx, "sh", "-c", fmt.Sprintf("sleep 0.2 & sleep 0.1 & exit %d", i)).Run()
		var ee *agent.ExitError
		if i == 0 && err != nil || i > 0 && (!errors.As(err, &ee) || ee.ExitCode() != i) {
			t.Fatalf("exec %d: %v", i, err)
		}
	}
	deadline := time.Now().Add(time.Minute)
	for {
		out, err := c.Command(ctx, "sh", "-c", "cat /proc/[0-9]*/stat 2>/dev/null; true").Output()
		if err != nil {
			t.Fatal(err)
		}
		var left []string
		for _, l := range strings.Split(string(out), "\n") {
			// Children of PID 1 other than the sh that lists them.
			i := strings.LastIndexByte(l, ')')
			if i < 0 {
				continue
			}
			f := strings.Fields(l[i+1:])
			if len(f) > 1 && f[1] == "1" && !strings.Contains(l, "(sh)") && !strings.Contains(l, "(cat)") {
				left = append(left, l)
			}
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("children of PID 1 left (Z = zombie): %q", left)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// SIGTERM to PID 1 is ignored.
	if err := c.Command(ctx, "kill", "-TERM", "1").Run(); err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("after SIGTERM: %v", err)
	}
	// Reboot: accepted, then the namespace goes away.
	if err := c.Reboot(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(time.Minute):
		t.Fatal("namespace still running after reboot")
	}
	if _, err := c.Command(ctx, "true").Output(); err == nil {
		t.Fatal("exec after reboot worked")
	} else if !errors.Is(err, agent.ErrConnectionLost) && !errors.Is(err, agent.ErrClosed) && !errors.Is(err, io.EOF) {
		t.Logf("exec after reboot: %v", err)
	}
}
