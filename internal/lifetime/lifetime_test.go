package lifetime

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/supermachine-go/supermachine-kernel/internal/poll"
	"github.com/supermachine-go/supermachine-kernel/internal/reexec"
)

func TestMain(m *testing.M) {
	if os.Getenv(reexec.EnvVar) == "owner" {
		owner()
		return
	}
	os.Exit(m.Run())
}

// owner is the helper process: it makes a marked directory and starts a
// child with Start from a goroutine whose thread then ends (which would
// fire a parent-death signal tied to that thread), prints both and waits
// to be killed.
func owner() {
	// Keep the main thread, which Go never ends, for this goroutine, so
	// that the one below runs on a thread that ends with it.
	runtime.LockOSThread()
	dir, err := MkdirTemp("owner")
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	os.WriteFile(filepath.Join(dir, "qmp.sock"), nil, 0o600)
	started := make(chan *exec.Cmd)
	go func() {
		runtime.LockOSThread() // never unlocked: this thread ends with the goroutine
		cmd := exec.Command("sleep", "300")
		if err := Start(cmd); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		started <- cmd
	}()
	cmd := <-started
	fmt.Printf("%s %d\n", dir, cmd.Process.Pid)
	time.Sleep(time.Hour) // until killed
}

// startOwner starts the helper and returns it, its directory and its
// child's PID.
func startOwner(t *testing.T) (*exec.Cmd, string, int) {
	t.Helper()
	if reexec.Emulated() {
		t.Skip("the helper runs under qemu-user")
	}
	cmd, err := reexec.Command("owner")
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("helper: %v", err)
	}
	var dir string
	var pid int
	if _, err := fmt.Sscanf(line, "%s %d", &dir, &pid); err != nil {
		t.Fatalf("helper said %q", line)
	}
	return cmd, dir, pid
}

// A directory whose owner lives is kept by a sweep; once the owner is
// killed (SIGKILL: nothing of its own runs), the next sweep removes it,
// calling before first.
func TestSweep(t *testing.T) {
	helper, dir, _ := startOwner(t)
	mine, err := MkdirTemp("mine")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { RemoveTemp(mine) })
	if !strings.Contains(filepath.Base(dir), fmt.Sprintf("-owner-%d-", helper.Process.Pid)) {
		t.Errorf("directory %s does not name its owner %d", dir, helper.Process.Pid)
	}
	removed, err := Sweep(nil)
	if err != nil || slices.Contains(removed, dir) || slices.Contains(removed, mine) {
		t.Fatalf("sweep with live owners removed %q (%v)", removed, err)
	}
	helper.Process.Kill()
	helper.Wait()
	var seen []string
	removed, err = Sweep(func(d string) { seen = append(seen, d) })
	if err != nil || !slices.Contains(removed, dir) || !slices.Contains(seen, dir) {
		t.Fatalf("sweep after the owner's death removed %q, saw %q (%v); want %s", removed, seen, err, dir)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("%s still there: %v", dir, err)
	}
	if _, err := os.Stat(mine); err != nil {
		t.Fatalf("the sweep removed this process's own directory: %v", err)
	}
	RemoveTemps()
	if _, err := os.Stat(mine); !os.IsNotExist(err) {
		t.Fatalf("RemoveTemps left %s: %v", mine, err)
	}
}

// An unmarked directory of the same name, or a hidden one (its owner
// died while marking it), is swept only once it is older than the grace
// period.
func TestSweepUnmarked(t *testing.T) {
	for _, name := range []string{
		fmt.Sprintf("%sunmarked-%d-1234", tempPrefix, os.Getpid()),
		fmt.Sprintf(".%shidden-%d-1234", tempPrefix, os.Getpid()),
	} {
		dir := filepath.Join(os.TempDir(), name)
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		if removed, _ := Sweep(nil); slices.Contains(removed, dir) {
			t.Fatalf("a fresh %s was swept", name)
		}
		old := time.Now().Add(-2 * sweepGrace)
		os.Chtimes(dir, old, old)
		if removed, _ := Sweep(nil); !slices.Contains(removed, dir) {
			t.Fatalf("an old %s was not swept", name)
		}
	}
}

// Processes making directories while others sweep: no sweep ever removes
// a directory whose owner lives.
func TestSweepRacesMkdir(t *testing.T) {
	stop := make(chan struct{})
	swept := make(chan []string)
	go func() {
		var all []string
		for {
			select {
			case <-stop:
				swept <- all
				return
			default:
			}
			r, _ := Sweep(nil)
			all = append(all, r...)
		}
	}()
	var mine []string
	for range 200 {
		d, err := MkdirTemp("race")
		if err != nil {
			t.Fatal(err)
		}
		mine = append(mine, d)
	}
	close(stop)
	all := <-swept
	for _, d := range mine {
		if slices.Contains(all, d) {
			t.Errorf("a sweep removed %s, whose owner lives", d)
		}
		if err := RemoveTemp(d); err != nil {
			t.Error(err)
		}
	}
}

// The child of a killed owner dies with it, although the goroutine that
// started it has ended with its thread.
func TestChildDiesWithOwner(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("only Linux has a parent-death signal")
	}
	helper, dir, child := startOwner(t)
	t.Cleanup(func() { os.RemoveAll(dir) }) // the dead owner's, not swept here
	// The thread that asked for the child is gone: the child lives on.
	time.Sleep(200 * time.Millisecond)
	if !alive(child) {
		t.Fatal("the child died when the thread that asked for it ended")
	}
	helper.Process.Kill()
	helper.Wait()
	waitDead(t, child)
}

// KillChildren kills what Start started and is not waited for.
func TestKillChildren(t *testing.T) {
	cmd := exec.Command("sleep", "300")
	if err := Start(cmd); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	KillChildren()
	select {
	case err := <-done:
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("child ended with %v, want SIGKILL", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the child was not killed within 10 s")
	}
}

// alive reports whether pid is a process that is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] != 'Z' && s[i+2] != 'X'
}

func waitDead(t *testing.T, pid int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := poll.Until(ctx, poll.Peer, fmt.Sprintf("process %d to die", pid), func() (bool, error) { return !alive(pid), nil }); err != nil {
		t.Fatal(err)
	}
}
