package extract

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/supermachine-go/supermachine-kernel/internal/reexec"

	"github.com/supermachine-go/supermachine-kernel/internal/atomicfile"
)

func TestCacheConcurrentGoroutines(t *testing.T) {
	root := t.TempDir()
	const n = 16
	paths := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			// Half of them verify in full, to mix the paths.
			paths[i], errs[i] = Cache{Dir: root, Verify: i%2 == 0}.Path(context.Background(), busybox(), "busybox", testMode)
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || paths[i] != paths[0] {
			t.Fatalf("goroutine %d: %s, %v", i, paths[i], errs[i])
		}
	}
	assertFile(t, paths[0], busybox(), testMode)
	assertNoTemps(t, root)
}

func TestWriteFileConcurrentGoroutines(t *testing.T) {
	dest := filepath.Join(t.TempDir(), "busybox")
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() { errs <- WriteFile(context.Background(), dest, busybox(), testMode, false) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	assertFile(t, dest, busybox(), testMode)
	assertNoTemps(t, filepath.Dir(dest))
}

// TestCacheConcurrentProcesses starts 16 processes that put the same asset
// into one cache at once: all succeed, and there is one identical file.
func TestCacheConcurrentProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping 16 processes in short mode")
	}
	root := t.TempDir()
	const n = 16
	type result struct {
		out string
		err error
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		cmd, err := reexec.Command("cache")
		if err != nil {
			t.Fatal(err)
		}
		cmd.Env = append(cmd.Env, argVar+"="+root)
		wg.Go(func() {
			<-start
			out, err := cmd.Output()
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				err = errors.New(string(ee.Stderr))
			}
			results[i] = result{strings.TrimSpace(string(out)), err}
		})
	}
	close(start)
	wg.Wait()
	want := filepath.Join(root, busybox().SHA256, "busybox")
	for i, r := range results {
		if r.err != nil || r.out != want {
			t.Errorf("process %d: %q, %v", i, r.out, r.err)
		}
	}
	assertFile(t, want, busybox(), testMode)
	ents, _ := os.ReadDir(filepath.Dir(want))
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != ".busybox.verified busybox" {
		t.Errorf("cache entry holds %q, want the file and its stamp", names)
	}
}

// TestKilledMidWrite kills a writer with SIGKILL half-way through: the
// destination does not exist, the temporary file is the only trace, and
// the next write removes it.
func TestKilledMidWrite(t *testing.T) {
	for _, mode := range []string{"kill-write", "kill-cache"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			dest := filepath.Join(dir, "busybox")
			if mode == "kill-cache" {
				dest = filepath.Join(dir, busybox().SHA256, "busybox")
			}
			cmd, err := reexec.Command(mode)
			if err != nil {
				t.Fatal(err)
			}
			arg := dest
			if mode == "kill-cache" {
				arg = dir
			}
			cmd.Env = append(cmd.Env, argVar+"="+arg)
			stdout, _ := cmd.StdoutPipe()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			line, err := bufio.NewReader(stdout).ReadString('\n')
			if err != nil || !strings.HasPrefix(line, "TMP ") {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("helper said %q, %v", line, err)
			}
			tmp := strings.TrimSpace(strings.TrimPrefix(line, "TMP "))
			cmd.Process.Signal(syscall.SIGKILL)
			cmd.Wait()

			assertAbsent(t, dest)
			if fi, err := os.Stat(tmp); err != nil || fi.Size() == 0 || fi.Size() >= busybox().Size {
				t.Fatalf("temporary file %s: %v (want a partial one)", tmp, err)
			}
			// A fresh temporary file might belong to a live writer:
			// it stays. An old one nobody holds goes.
			ctx := context.Background()
			if mode == "kill-write" {
				if err := WriteFile(ctx, dest, busybox(), testMode, false); err != nil {
					t.Fatal(err)
				}
			} else if _, err := (Cache{Dir: dir}).Path(ctx, busybox(), "busybox", testMode); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(tmp); err != nil {
				t.Fatalf("a fresh temporary file was removed: %v", err)
			}
			old := time.Now().Add(-2 * atomicfile.StaleAge)
			os.Chtimes(tmp, old, old)
			os.Remove(dest)
			if mode == "kill-write" {
				err = WriteFile(ctx, dest, busybox(), testMode, false)
			} else {
				_, err = Cache{Dir: dir}.Path(ctx, busybox(), "busybox", testMode)
			}
			if err != nil {
				t.Fatal(err)
			}
			assertFile(t, dest, busybox(), testMode)
			assertAbsent(t, tmp)
			assertNoTemps(t, dir)
		})
	}
}
