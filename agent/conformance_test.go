//go:build linux

package agent_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
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
	Signal(os.Signal) error
	SetStdin(io.Reader)
	SetStdout(io.Writer)
}

type osCmd struct{ *exec.Cmd }

func (c osCmd) Signal(sig os.Signal) error { return c.Process.Signal(sig) }
func (c osCmd) SetStdin(r io.Reader)       { c.Stdin = r }
func (c osCmd) SetStdout(w io.Writer)      { c.Stdout = w }

type agentCmd struct{ *agent.Cmd }

func (c agentCmd) SetStdin(r io.Reader)  { c.Stdin = r }
func (c agentCmd) SetStdout(w io.Writer) { c.Stdout = w }

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

var errWriter = errors.New("the writer always fails")

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errWriter }

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
}

// TestConformance runs each scenario with os/exec on this host and with the
// agent client against an agent on a Unix socket, and expects the same.
func TestConformance(t *testing.T) {
	c := newClient(t)
	for _, sc := range conformance {
		t.Run("os-exec/"+sc.name, func(t *testing.T) {
			sc.run(t, func(ctx context.Context, name string, arg ...string) conformCmd {
				if ctx == nil {
					return osCmd{exec.Command(name, arg...)}
				}
				return osCmd{exec.CommandContext(ctx, name, arg...)}
			})
		})
		t.Run("agent/"+sc.name, func(t *testing.T) {
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
