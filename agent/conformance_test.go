//go:build linux

package agent_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/supermachine-go/supermachine-kernel/agent"
	"golang.org/x/sys/unix"
)

// conformCmd is what the conformance scenarios use of a command: the API
// that exec.Cmd and agent.Cmd share, plus setters for their fields.
type conformCmd interface {
	Start() error
	Wait() error
	Run() error
	Output() ([]byte, error)
	CombinedOutput() ([]byte, error)
	StdinPipe() (io.WriteCloser, error)
	StdoutPipe() (io.ReadCloser, error)
	StderrPipe() (io.ReadCloser, error)
	Signal(os.Signal) error
	SetStdin(io.Reader)
	SetStdout(io.Writer)
	SetWaitDelay(time.Duration)
}

type osCmd struct{ *exec.Cmd }

func (c osCmd) Signal(sig os.Signal) error   { return c.Process.Signal(sig) }
func (c osCmd) SetStdin(r io.Reader)         { c.Stdin = r }
func (c osCmd) SetStdout(w io.Writer)        { c.Stdout = w }
func (c osCmd) SetWaitDelay(d time.Duration) { c.WaitDelay = d }

type agentCmd struct{ *agent.Cmd }

func (c agentCmd) SetStdin(r io.Reader)         { c.Stdin = r }
func (c agentCmd) SetStdout(w io.Writer)        { c.Stdout = w }
func (c agentCmd) SetWaitDelay(d time.Duration) { c.WaitDelay = d }

// exitOf describes the *exec.ExitError or *agent.ExitError in err: exit
// code, signal name ("" if none) and the captured stderr.
func exitOf(err error) (code int, signal, stderr string, ok bool) {
	var oe *exec.ExitError
	if errors.As(err, &oe) {
		ws := oe.Sys().(syscall.WaitStatus)
		if ws.Signaled() {
			signal = unix.SignalName(ws.Signal())
		}
		return oe.ExitCode(), signal, string(oe.Stderr), true
	}
	var ae *agent.ExitError
	if errors.As(err, &ae) {
		return ae.ExitCode(), ae.Signal(), string(ae.Stderr), true
	}
	return 0, "", "", false
}

var (
	errWriter = errors.New("the writer always fails")
	errStdin  = errors.New("the reader fails after its data")
)

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errWriter }

type failReader struct{}

func (failReader) Read([]byte) (int, error) { return 0, errStdin }

// shortWriter takes one byte less than it is given, without an error.
type shortWriter struct{}

func (shortWriter) Write(p []byte) (int, error) { return max(len(p)-1, 0), nil }

// slowWriter blocks in every Write for delay, or until release is closed
// if delay is zero; first is closed when the first Write starts.
type slowWriter struct {
	delay   time.Duration
	release chan struct{}
	first   chan struct{}
	once    sync.Once
	mu      sync.Mutex
	writes  int
}

func newSlowWriter(delay time.Duration) *slowWriter {
	return &slowWriter{delay: delay, release: make(chan struct{}), first: make(chan struct{})}
}

func (w *slowWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.first) })
	w.mu.Lock()
	w.writes++
	w.mu.Unlock()
	if w.delay > 0 {
		time.Sleep(w.delay)
	} else {
		<-w.release
	}
	return len(p), nil
}

func (w *slowWriter) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.writes
}

// waitFirstWrite waits until w's first Write has started.
func waitFirstWrite(t *testing.T, w *slowWriter) {
	t.Helper()
	select {
	case <-w.first:
	case <-time.After(10 * time.Second):
		t.Fatal("no output reached the Stdout writer within 10s")
	}
}

// notWithin fails the test if f returns within d, and returns a channel
// closed when f has returned.
func notWithin(t *testing.T, d time.Duration, what string, f func()) <-chan struct{} {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
		t.Errorf("%s: returned within %v, want it blocked", what, d)
	case <-time.After(d):
	}
	return done
}

// readAllAsync reads r to its end in a goroutine.
func readAllAsync(r io.Reader) <-chan string {
	c := make(chan string, 1)
	go func() {
		b, err := io.ReadAll(r)
		if err != nil {
			c <- "error: " + err.Error()
			return
		}
		c <- string(b)
	}()
	return c
}

// within runs f and fails the test if it has not returned after d.
func within(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s: still blocked after %v", what, d)
	}
}

// conformance lists scenarios whose observable outcome must be the same
// for os/exec and for the agent client. newCmd makes a command; ctx may be
// nil for a command without context.
var conformance = []struct {
	name string
	run  func(t *testing.T, newCmd func(ctx context.Context, name string, arg ...string) conformCmd)
}{
	{"pipes closed after a failed Start", func(t *testing.T, newCmd func(context.Context, string, ...string) conformCmd) {
		cmd := newCmd(nil, "no-such-program-xyz")
		in, _ := cmd.StdinPipe()
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err == nil {
			t.Fatal("Start succeeded")
		}
		within(t, 5*time.Second, "reading StdoutPipe after a failed Start", func() {
			if b, err := io.ReadAll(out); err == nil || len(b) != 0 {
				t.Errorf("ReadAll = %q, %v; want an error", b, err)
			}
		})
		within(t, 5*time.Second, "writing StdinPipe after a failed Start", func() {
			if _, err := in.Write([]byte("x")); err == nil {
				t.Error("Write succeeded")
			}
		})
	}},
	{"copy error returned by Wait", func(t *testing.T, newCmd func(context.Context, string, ...string) conformCmd) {
		cmd := newCmd(nil, "echo", "hello")
		cmd.SetStdout(failWriter{})
		if err := cmd.Run(); !errors.Is(err, errWriter) {
			t.Fatalf("Run = %v, want the writer's error", err)
		}
	}},
	{"Signal while stdin is blocked", func(t *testing.T, newCmd func(context.Context, string, ...string) conformCmd) {
		cmd := newCmd(nil, "sleep", "60")
		cmd.SetStdin(bytes.NewReader(make([]byte, 64<<20)))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond) // let the input back up
		within(t, 5*time.Second, "Signal(SIGTERM)", func() {
			if err := cmd.Signal(syscall.SIGTERM); err != nil {
				t.Error(err)
			}
		})
		within(t, 10*time.Second, "Wait after SIGTERM", func() {
			err := cmd.Wait()
			if _, sig, _, ok := exitOf(err); !ok || sig != "SIGTERM" {
				t.Errorf("Wait = %v, want signal SIGTERM", err)
			}
		})
	}},
	{"Wait after Kill", func(t *testing.T, newCmd func(context.Context, string, ...string) conformCmd) {
		cmd := newCmd(nil, "sleep", "60")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Signal(os.Kill); err != nil {
			t.Fatal(err)
		}
		err := cmd.Wait()
		if code, sig, _, ok := exitOf(err); !ok || sig != "SIGKILL" || code != -1 {
			t.Fatalf("Wait = %v, want signal SIGKILL and exit code -1", err)
		}
		if err := cmd.Signal(syscall.SIGTERM); !errors.Is(err, os.ErrProcessDone) {
			t.Fatalf("Signal after Wait = %v, want os.ErrProcessDone", err)
		}
	}},
	{"Signal during Wait", func(t *testing.T, newCmd func(context.Context, string, ...string) conformCmd) {
		cmd := newCmd(nil, "sleep", "60")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waited := make(chan error, 1)
		go func() { waited <- cmd.Wait() }()
		time.Sleep(100 * time.Millisecond) // Wait is blocked
		within(t, 5*time.Second, "Signal during Wait", func() {
			if err := cmd.Signal(syscall.SIGTERM); err != nil {
				t.Error(err)
			}
		})
		within(t, 10*time.Second, "Wait after SIGTERM", func() {
			if _, sig, _, ok := exitOf(<-waited); !ok || sig != "SIGTERM" {
				t.Error("Wait did not report SIGTERM")
			}
		})
	}},
	{"context cancel", func(t *testing.T, newCmd func(context.Context, string, ...string) conformCmd) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		cmd := newCmd(ctx, "sleep", "60")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cancel()
		within(t, 10*time.Second, "Wait after cancel", func() {
			err := cmd.Wait()
			if _, sig, _, ok := exitOf(err); !ok || sig != "SIGKILL" || errors.Is(err, context.Canceled) {
				t.Errorf("Wait = %v, want signal SIGKILL", err)
			}
		})
		// A context that is done already: Start fails.
		if err := newCmd(ctx, "true").Start(); !errors.Is(err, context.Canceled) {
			t.Errorf("Start with a canceled context = %v", err)
		}
	}},
	{"Output with ExitError", func(t *testing.T, newCmd func(context.Context, string, ...string) conformCmd) {
		out, err := newCmd(nil, "sh", "-c", "echo out; echo err >&2; exit 3").Output()
		code, sig, stderr, ok := exitOf(err)
		if string(out) != "out\n" || !ok || code != 3 || sig != "" || stderr != "err\n" {
			t.Fatalf("Output = %q, %v (code %d, stderr %q)", out, err, code, stderr)
		}
	}},
	{"CombinedOutput with ExitError", func(t *testing.T, newCmd func(context.Context, string, ...string) conformCmd) {
		out, err := newCmd(nil, "sh", "-c", "echo out; echo err >&2; exit 3").CombinedOutput()
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		slices.Sort(lines)
		code, _, stderr, ok := exitOf(err)
		if strings.Join(lines, ",") != "err,out" || !ok || code != 3 || stderr != "" {
			t.Fatalf("CombinedOutput = %q, %v", out, err)
		}
	}},
	{"StdinPipe close gives EOF", func(t *testing.T, newCmd func(context.Context, string, ...string) conformCmd) {
		cmd := newCmd(nil, "cat")
		in, _ := cmd.StdinPipe()
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		io.WriteString(in, "hello\n")
		in.Close()
		within(t, 10*time.Second, "cat after stdin closed", func() {
			b, err := io.ReadAll(out)
			if string(b) != "hello\n" || err != nil {
				t.Errorf("ReadAll = %q, %v", b, err)
			}
			if err := cmd.Wait(); err != nil {
				t.Error(err)
			}
		})
	}},
	{"double Start and Wait", func(t *testing.T, newCmd func(context.Context, string, ...string) conformCmd) {
		cmd := newCmd(nil, "true")
		if err := cmd.Wait(); err == nil {
			t.Error("Wait before Start succeeded")
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err == nil {
			t.Error("second Start succeeded")
		}
		if err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err == nil {
			t.Error("second Wait succeeded")
		}
		failed := newCmd(nil, "no-such-program-xyz")
		if err := failed.Start(); err == nil {
			t.Error("Start of a missing program succeeded")
		}
		if err := failed.Start(); err == nil {
			t.Error("second Start after a failed one succeeded")
		}
	}},
	{"exit by signal", func(t *testing.T, newCmd func(context.Context, string, ...string) conformCmd) {
		err := newCmd(nil, "sh", "-c", "kill -ABRT $$").Run()
		if code, sig, _, ok := exitOf(err); !ok || sig != "SIGABRT" || code != -1 {
			t.Fatalf("Run = %v, want signal SIGABRT", err)
		}
	}},
	{"sequential pipe reads, stderr under 64 KiB", func(t *testing.T, newCmd func(context.Context, string, ...string) conformCmd) {
		// stdout to its end first, then stderr: works while stderr fits
		// in a pipe's buffer.
		cmd := newCmd(nil, "sh", "-c", `head -c 60000 /dev/zero | tr '\0' e >&2; echo out`)
		out, _ := cmd.StdoutPipe()
		errp, _ := cmd.StderrPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		within(t, 10*time.Second, "reading StdoutPipe to its end", func() {
			if b, err := io.ReadAll(out); string(b) != "out\n" || err != nil {
				t.Errorf("stdout %q, %v", b, err)
			}
		})
		within(t, 10*time.Second, "then reading StderrPipe", func() {
			if b, err := io.ReadAll(errp); len(b) != 60000 || strings.Trim(string(b), "e") != "" || err != nil {
				t.Errorf("stderr: %d bytes, %v", len(b), err)
			}
		})
		within(t, 10*time.Second, "Wait", func() {
			if err := cmd.Wait(); err != nil {
				t.Error(err)
			}
		})
	}},
	{"sequential pipe reads, stderr over 64 KiB", func(t *testing.T, newCmd func(context.Context, string, ...string) conformCmd) {
		// Past a pipe's buffer, stdout does not end while stderr is
		// unread; reading stderr releases it.
		const size = 200000
		cmd := newCmd(nil, "sh", "-c", fmt.Sprintf(`head -c %d /dev/zero | tr '\0' e >&2; echo out`, size))
		out, _ := cmd.StdoutPipe()
		errp, _ := cmd.StderrPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		stdout := readAllAsync(out)
		select {
		case s := <-stdout:
			t.Fatalf("stdout ended (%q) while %d bytes of stderr were unread", s, size)
		case <-time.After(time.Second):
		}
		within(t, 10*time.Second, "reading StderrPipe", func() {
			if b, err := io.ReadAll(errp); len(b) != size || err != nil {
				t.Errorf("stderr: %d bytes, %v", len(b), err)
			}
		})
		within(t, 10*time.Second, "stdout after stderr was read", func() {
			if s := <-stdout; s != "out\n" {
				t.Errorf("stdout %q", s)
			}
		})
		within(t, 10*time.Second, "Wait", func() {
			if err := cmd.Wait(); err != nil {
				t.Error(err)
			}
		})
	}},
	{"never-read pipes, context canceled", func(t *testing.T, newCmd func(context.Context, string, ...string) conformCmd) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		cmd := newCmd(ctx, "cat", "/dev/zero")
		cmd.StdoutPipe()
		cmd.StderrPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond) // the output backs up
		cancel()
		within(t, 10*time.Second, "Wait after cancel with unread pipes", func() {
			err := cmd.Wait()
			if _, sig, _, ok := exitOf(err); !ok || sig != "SIGKILL" {
				t.Errorf("Wait = %v, want signal SIGKILL", err)
			}
		})
	}},
	{"blocking Stdout writer, context canceled, WaitDelay", func(t *testing.T, newCmd func(context.Context, string, ...string) conformCmd) {
		// Each Write takes 500 ms: Wait returns once the Write in
		// progress after WaitDelay returns, not when all output is
		// written.
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		cmd := newCmd(ctx, "cat", "/dev/zero")
		w := newSlowWriter(500 * time.Millisecond)
		cmd.SetStdout(w)
		cmd.SetWaitDelay(100 * time.Millisecond)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitFirstWrite(t, w)
		cancel()
		within(t, 5*time.Second, "Wait after cancel with a blocking Stdout writer", func() {
			err := cmd.Wait()
			if _, sig, _, ok := exitOf(err); !ok || sig != "SIGKILL" {
				t.Errorf("Wait = %v, want signal SIGKILL", err)
			}
		})
		if n := w.count(); n > 3 {
			t.Errorf("%d writes, want the output cut off after WaitDelay", n)
		}
	}},
	{"blocked Stdout writer after exit, WaitDelay", func(t *testing.T, newCmd func(context.Context, string, ...string) conformCmd) {
		// Wait waits for a Write in progress, then reports that the
		// output was cut short.
		cmd := newCmd(nil, "sh", "-c", "echo one; echo two")
		w := newSlowWriter(0)
		cmd.SetStdout(w)
		cmd.SetWaitDelay(100 * time.Millisecond)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitFirstWrite(t, w)
		waited := make(chan error, 1)
		done := notWithin(t, time.Second, "Wait while a Stdout Write is blocked", func() { waited <- cmd.Wait() })
		close(w.release)
		within(t, 5*time.Second, "Wait after the Write returned", func() { <-done })
		if err := <-waited; !errors.Is(err, exec.ErrWaitDelay) || !errors.Is(err, agent.ErrWaitDelay) {
			t.Errorf("Wait = %v, want ErrWaitDelay", err)
		}
	}},
	{"Stdin reader fails", func(t *testing.T, newCmd func(context.Context, string, ...string) conformCmd) {
		cmd := newCmd(nil, "cat")
		cmd.SetStdin(io.MultiReader(strings.NewReader("data"), failReader{}))
		var out bytes.Buffer
		cmd.SetStdout(&out)
		within(t, 10*time.Second, "Run with a failing Stdin", func() {
			if err := cmd.Run(); !errors.Is(err, errStdin) || out.String() != "data" {
				t.Errorf("Run = %v with output %q, want the reader's error and %q", err, out.String(), "data")
			}
		})
		// The exit status comes first.
		cmd = newCmd(nil, "sh", "-c", "cat; exit 3")
		cmd.SetStdin(io.MultiReader(strings.NewReader("data"), failReader{}))
		within(t, 10*time.Second, "Run with a failing Stdin and exit 3", func() {
			if code, _, _, ok := exitOf(cmd.Run()); !ok || code != 3 {
				t.Errorf("Run: exit code %d (%v), want 3", code, ok)
			}
		})
	}},
	{"Stdin file that blocks", func(t *testing.T, newCmd func(context.Context, string, ...string) conformCmd) {
		// Input nobody writes: os/exec hands the file to the process;
		// the agent's copy stays in Read, which Wait does not wait for.
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer pr.Close()
		cmd := newCmd(nil, "true")
		cmd.SetStdin(pr)
		within(t, 10*time.Second, "Run with a Stdin that blocks", func() {
			if err := cmd.Run(); err != nil {
				t.Error(err)
			}
		})
		pw.Close() // the Read returns: the agent's copy ends
	}},
	{"short write to Stdout", func(t *testing.T, newCmd func(context.Context, string, ...string) conformCmd) {
		cmd := newCmd(nil, "echo", "hello")
		cmd.SetStdout(shortWriter{})
		if err := cmd.Run(); !errors.Is(err, io.ErrShortWrite) {
			t.Errorf("Run = %v, want io.ErrShortWrite", err)
		}
		cmd = newCmd(nil, "sh", "-c", "echo hello; exit 2")
		cmd.SetStdout(shortWriter{})
		if code, _, _, ok := exitOf(cmd.Run()); !ok || code != 2 {
			t.Errorf("Run: exit code %d (%v), want 2 before the short write", code, ok)
		}
	}},
}

// checkGoroutines fails the test if more goroutines run than before,
// once the ones that are ending have had a moment to end.
func checkGoroutines(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	n := runtime.NumGoroutine()
	for n > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		n = runtime.NumGoroutine()
	}
	if n > before {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines after Wait, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}

// TestConformance runs each scenario with os/exec on this host and with the
// agent client against an agent on a Unix socket, and expects the same.
func TestConformance(t *testing.T) {
	c := newClient(t)
	// A call, so that the server's goroutines of this connection are all
	// running before the first goroutine count.
	if err := c.Ping(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	for _, sc := range conformance {
		t.Run("os-exec/"+sc.name, func(t *testing.T) {
			defer checkGoroutines(t, runtime.NumGoroutine())
			sc.run(t, func(ctx context.Context, name string, arg ...string) conformCmd {
				if ctx == nil {
					return osCmd{exec.Command(name, arg...)}
				}
				return osCmd{exec.CommandContext(ctx, name, arg...)}
			})
		})
		t.Run("agent/"+sc.name, func(t *testing.T) {
			defer checkGoroutines(t, runtime.NumGoroutine())
			sc.run(t, func(ctx context.Context, name string, arg ...string) conformCmd {
				if ctx == nil {
					ctx = testCtx(t)
				}
				return agentCmd{c.Command(ctx, name, arg...)}
			})
		})
	}
}

// A Start that fails because the client is closed closes the pipes too.
func TestStartOnClosedClientClosesPipes(t *testing.T) {
	c := newClient(t)
	c.Close()
	cmd := c.Command(testCtx(t), "true")
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); !errors.Is(err, agent.ErrClosed) {
		t.Fatalf("Start = %v, want ErrClosed", err)
	}
	within(t, 5*time.Second, "ReadAll of StdoutPipe", func() {
		if _, err := io.ReadAll(out); err == nil {
			t.Error("ReadAll succeeded")
		}
	})
}
