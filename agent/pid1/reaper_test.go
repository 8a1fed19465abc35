//go:build linux

package pid1_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/supermachine-go/supermachine-kernel/agent"
	"github.com/supermachine-go/supermachine-kernel/agent/pid1"
	"github.com/supermachine-go/supermachine-kernel/agent/server"
	"github.com/supermachine-go/supermachine-kernel/internal/reexec"
)

const helperEnv = "PID1_TEST_REAPER_SOCKET"

// TestMain turns the test binary into the reaper helper when re-exec'd: a
// child subreaper that serves the agent with a Reaper as its Starter, like
// the agent at PID 1.
func TestMain(m *testing.M) {
	if sock := os.Getenv(helperEnv); sock != "" {
		os.Exit(reaperHelper(sock))
	}
	os.Exit(m.Run())
}

func reaperHelper(sock string) int {
	// PID 1 of a PID namespace (see TestReaperInSubreaper under
	// emulation) is the reaper of orphans without asking.
	if os.Getpid() != 1 {
		if err := pid1.SetSubreaper(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	r := pid1.NewReaper()
	// The direct API first: exit statuses and rusage of registered
	// children. (This runs here, not in the test process, because a
	// Reaper would steal the statuses of the test's other children.)
	for _, code := range []int{0, 1, 42} {
		_, wait, err := r.StartProcess("/bin/sh", []string{"sh", "-c", fmt.Sprintf("exit %d", code)}, nil)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if ws, ru, err := wait(); err != nil || ws.ExitStatus() != code || ru.Maxrss <= 0 {
			fmt.Fprintf(os.Stderr, "exit %d: status %d, maxrss %d, %v\n", code, ws.ExitStatus(), ru.Maxrss, err)
			return 1
		}
	}
	l, err := net.Listen("unix", sock)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	srv := server.New(server.Config{Version: agent.Version, Starter: r})
	fmt.Println("ready")
	srv.Serve(l)
	return 0
}

// children returns the pids and states of the processes whose parent is
// ppid.
func children(t *testing.T, ppid int) map[int]string {
	t.Helper()
	out := map[int]string{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		f := strings.Fields(s[i+1:])
		if len(f) < 2 {
			continue
		}
		if p, _ := strconv.Atoi(f[1]); p == ppid {
			out[pid] = f[0]
		}
	}
	return out
}

func TestReaperInSubreaper(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "reaper.sock")
	// Through internal/reexec, so that it runs under qemu-user too
	// (GOARCH=arm64 go test -exec qemu-aarch64-static): there the helper
	// is the emulator running the test binary, in one process.
	helper, err := reexec.Command("reaper", "-test.run=^$")
	if err != nil {
		t.Fatal(err)
	}
	helper.Env = append(helper.Env, helperEnv+"="+sock)
	inNamespace := reexec.Emulated()
	if inNamespace {
		// qemu-user refuses prctl(PR_SET_CHILD_SUBREAPER) with EINVAL.
		// The helper runs as PID 1 of a new PID namespace instead:
		// orphans are re-parented to it the same way, which is what
		// the agent relies on in the guest.
		unshare, err := exec.LookPath("unshare")
		if err != nil || os.Geteuid() != 0 {
			t.Skipf("skipping: under qemu-user the subreaper prctl is refused, and running the helper as PID 1 of a PID namespace needs root and unshare(1) (euid %d, %v)", os.Geteuid(), err)
		}
		ns := exec.Command(unshare, append([]string{"--pid", "--fork", "--kill-child", helper.Path}, helper.Args[1:]...)...)
		ns.Env = helper.Env
		helper = ns
	}
	helper.Stderr = os.Stderr
	stdout, _ := helper.StdoutPipe()
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		helper.Process.Kill()
		helper.Wait()
	}()
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("helper: %q %v", line, err)
	}
	reaper := helper.Process.Pid
	if inNamespace {
		// The helper is unshare's one child.
		kids := children(t, reaper)
		if len(kids) != 1 {
			t.Fatalf("unshare has children %v, want the helper alone", kids)
		}
		for pid := range kids {
			reaper = pid
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := agent.Dial(ctx, "unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	// Each exec leaves an orphan that the helper must reap, while the
	// exec's own status must still arrive intact.
	for i := range 20 {
		err := c.Command(ctx, "sh", "-c", fmt.Sprintf("sleep 0.1 & exit %d", i%5)).Run()
		var ee *agent.ExitError
		switch {
		case i%5 == 0 && err != nil:
			t.Fatalf("exec %d: %v", i, err)
		case i%5 != 0 && (!errors.As(err, &ee) || ee.ExitCode() != i%5):
			t.Fatalf("exec %d: %v, want exit status %d", i, err, i%5)
		}
	}
	// Concurrent execs and orphans.
	errs := make(chan error, 10)
	for range 10 {
		go func() {
			out, err := c.Command(ctx, "sh", "-c", "sleep 0.1 & echo ok").Output()
			if err == nil && string(out) != "ok\n" {
				err = fmt.Errorf("output %q", out)
			}
			errs <- err
		}()
	}
	for range 10 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// Wait for the orphans to exit, then check that no zombie is left.
	deadline := time.Now().Add(time.Minute)
	for {
		kids := children(t, reaper)
		if len(kids) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("children of the reaper left: %v (Z = zombie)", kids)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
