//go:build linux

package agent_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/supermachine-go/supermachine-kernel/agent"
	"github.com/supermachine-go/supermachine-kernel/agent/protocol"
	"github.com/supermachine-go/supermachine-kernel/agent/server"
)

func TestExitCodes(t *testing.T) {
	c := newClient(t)
	ctx := testCtx(t)
	if err := c.Command(ctx, "true").Run(); err != nil {
		t.Fatalf("true: %v", err)
	}
	out, err := c.Command(ctx, "echo", "hello", "world").Output()
	if err != nil || string(out) != "hello world\n" {
		t.Fatalf("echo: %q, %v", out, err)
	}
	cmd := c.Command(ctx, "sh", "-c", "echo oops >&2; exit 3")
	_, err = cmd.Output()
	var ee *agent.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("exit 3: err = %v, want *ExitError", err)
	}
	if ee.ExitCode() != 3 || ee.Exited() == false || string(ee.Stderr) != "oops\n" || err.Error() != "exit status 3" {
		t.Fatalf("exit 3: code %d, stderr %q, %q", ee.ExitCode(), ee.Stderr, err)
	}
	if cmd.ProcessState.Duration() <= 0 || cmd.ProcessState.MaxRSS() <= 0 || cmd.ProcessState.Pid() <= 0 {
		t.Fatalf("state: %+v", cmd.ProcessState)
	}
	var stdout, stderr bytes.Buffer
	cmd = c.Command(ctx, "sh", "-c", "echo out; echo err >&2")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil || stdout.String() != "out\n" || stderr.String() != "err\n" {
		t.Fatalf("separate streams: %q %q %v", stdout.String(), stderr.String(), err)
	}
	out, err = c.Command(ctx, "sh", "-c", "echo a; echo b >&2").CombinedOutput()
	if err != nil || len(out) != 4 {
		t.Fatalf("combined: %q, %v", out, err)
	}
}

func TestStartErrors(t *testing.T) {
	c := newClient(t)
	ctx := testCtx(t)
	err := c.Command(ctx, "no-such-program-xyz").Run()
	var ae *agent.Error
	if !errors.As(err, &ae) || !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "no-such-program-xyz") {
		t.Fatalf("missing program: %v", err)
	}
	cmd := c.Command(ctx, "true")
	cmd.Dir = "/no/such/dir"
	err = cmd.Run()
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "/no/such/dir") {
		t.Fatalf("bad dir: %v", err)
	}
	if err := c.Command(ctx, "/etc/passwd").Run(); !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("not executable: %v", err)
	}
	cmd = c.Command(ctx, "true")
	cmd.User = "no-such-user-xyz"
	if err := cmd.Run(); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "no-such-user-xyz") {
		t.Fatalf("bad user: %v", err)
	}
	// The connection is still fine.
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestSignal(t *testing.T) {
	c := newClient(t)
	ctx := testCtx(t)
	cmd := c.Command(ctx, "sleep", "1000")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	var ee *agent.ExitError
	if !errors.As(err, &ee) || ee.Signal() != "SIGTERM" || ee.ExitCode() != -1 || ee.Exited() {
		t.Fatalf("err = %v, want signal SIGTERM", err)
	}
	if err.Error() != "signal: SIGTERM" {
		t.Fatalf("Error() = %q", err)
	}
	// A Signal name works too.
	cmd = c.Command(ctx, "sleep", "1000")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cmd.Signal(agent.Signal("USR1"))
	if err := cmd.Wait(); !errors.As(err, &ee) || ee.Signal() != "SIGUSR1" {
		t.Fatalf("err = %v, want SIGUSR1", err)
	}
}

func TestStdin(t *testing.T) {
	c := newClient(t)
	ctx := testCtx(t)
	in := make([]byte, 3<<20+17)
	rand.Read(in)
	cmd := c.Command(ctx, "cat")
	cmd.Stdin = bytes.NewReader(in)
	out, err := cmd.Output()
	if err != nil || !bytes.Equal(out, in) {
		t.Fatalf("cat: %d bytes, %v", len(out), err)
	}
	// Interactive: write a line, read it back, then close stdin.
	cmd = c.Command(ctx, "cat")
	w, _ := cmd.StdinPipe()
	r, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(r)
	for i := range 3 {
		fmt.Fprintf(w, "line %d\n", i)
		line, err := br.ReadString('\n')
		if err != nil || line != fmt.Sprintf("line %d\n", i) {
			t.Fatalf("line %d: %q, %v", i, line, err)
		}
	}
	w.Close()
	if rest, _ := io.ReadAll(br); len(rest) != 0 {
		t.Fatalf("rest %q", rest)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	// Without Stdin the process reads EOF at once.
	out, err = c.Command(ctx, "wc", "-c").Output()
	if err != nil || strings.TrimSpace(string(out)) != "0" {
		t.Fatalf("no stdin: %q %v", out, err)
	}
}

func TestTTY(t *testing.T) {
	c := newClient(t)
	ctx := testCtx(t)
	// Resize and stdin travel apart, so the script waits (up to 5 s) for
	// the new size instead of assuming it came before the input line.
	cmd := c.Command(ctx, "sh", "-c", `stty size; read line; i=0; while [ "$(stty size)" != "40 123" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done; stty size; test -t 0 && echo tty=$TERM`)
	cmd.TTY, cmd.Rows, cmd.Cols = true, 30, 90
	w, _ := cmd.StdinPipe()
	r, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(r)
	line, err := br.ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "30 90" {
		t.Fatalf("initial size: %q %v", line, err)
	}
	if err := cmd.Resize(40, 123); err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "go\n")
	var lines []string
	for {
		line, err := br.ReadString('\n')
		if l := strings.TrimSpace(line); l != "" {
			lines = append(lines, l)
		}
		if err != nil {
			break
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	// The pty echoes the input line.
	want := []string{"go", "40 123", "tty=xterm"}
	if strings.Join(lines, "|") != strings.Join(want, "|") {
		t.Fatalf("lines %q, want %q", lines, want)
	}
}

func TestEnvDirUser(t *testing.T) {
	c := newClient(t)
	ctx := testCtx(t)
	cmd := c.Command(ctx, "sh", "-c", `echo "$FOO|$PATH|$HOME"; pwd`)
	cmd.Env = []string{"FOO=bar", "PATH=/usr/bin:/bin"}
	cmd.Dir = "/tmp"
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	home := "/root"
	if os.Geteuid() != 0 {
		home, _ = os.UserHomeDir()
	}
	if want := "bar|/usr/bin:/bin|" + home + "\n/tmp\n"; string(out) != want {
		t.Fatalf("got %q, want %q", out, want)
	}
	// The default PATH applies without Env.
	out, err = c.Command(ctx, "sh", "-c", "echo $PATH").Output()
	if err != nil || strings.TrimSpace(string(out)) != "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" {
		t.Fatalf("default PATH: %q %v", out, err)
	}
	if os.Geteuid() != 0 {
		t.Skip("user switching needs root")
	}
	for _, user := range []string{"65534", "65534:65534", "nobody"} {
		cmd = c.Command(ctx, "sh", "-c", "id -u; id -g")
		cmd.User = user
		out, err = cmd.Output()
		if err != nil {
			t.Fatalf("user %s: %v", user, err)
		}
		if f := strings.Fields(string(out)); len(f) != 2 || f[0] != "65534" {
			t.Fatalf("user %s: id says %q", user, out)
		}
	}
	cmd = c.Command(ctx, "id", "-g")
	cmd.User = "65534:123"
	if out, err := cmd.Output(); err != nil || strings.TrimSpace(string(out)) != "123" {
		t.Fatalf("uid:gid: %q %v", out, err)
	}
}

func TestTimeout(t *testing.T) {
	c := newClient(t)
	ctx := testCtx(t)
	cmd := c.Command(ctx, "sh", "-c", "sleep 1000 & echo $!; wait")
	cmd.Timeout = 2 * time.Second
	out, err := cmd.Output()
	if !errors.Is(err, agent.ErrTimedOut) {
		t.Fatalf("err = %v, want ErrTimedOut", err)
	}
	var ee *agent.ExitError
	if !errors.As(err, &ee) || !ee.TimedOut() || ee.Signal() != "SIGKILL" || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("err = %v", err)
	}
	pid, perr := strconv.Atoi(strings.TrimSpace(string(out)))
	if perr != nil {
		t.Fatalf("output %q", out)
	}
	waitGone(t, pid) // the background sleep was in the process group
}

func TestContextCancel(t *testing.T) {
	c := newClient(t)
	ctx, cancel := context.WithCancel(testCtx(t))
	cmd := c.Command(ctx, "sleep", "1000")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Pid()
	cancel()
	// As with exec.CommandContext: the process is killed and Wait reports
	// how it ended.
	var ee *agent.ExitError
	if err := cmd.Wait(); !errors.As(err, &ee) || ee.Signal() != "SIGKILL" {
		t.Fatalf("err = %v, want signal: SIGKILL", err)
	}
	waitGone(t, pid)
}

func TestDisconnectKillsProcessGroup(t *testing.T) {
	sock := startServer(t, server.Config{})
	c := dial(t, sock)
	cmd := c.Command(testCtx(t), "sh", "-c", "sleep 1000 & echo $!; wait")
	r, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatal(err)
	}
	if !alive(pid) || !alive(cmd.Pid()) {
		t.Fatal("processes not running")
	}
	c.Close()
	waitGone(t, pid)
	waitGone(t, cmd.Pid())
	if err := cmd.Wait(); !errors.Is(err, agent.ErrConnectionLost) {
		t.Fatalf("Wait after Close: %v", err)
	}
}

func TestConcurrentExecs(t *testing.T) {
	c := newClient(t)
	ctx := testCtx(t)
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := c.Command(ctx, "echo", strconv.Itoa(i)).Output()
			if err == nil && string(out) != fmt.Sprintf("%d\n", i) {
				err = fmt.Errorf("exec %d: output %q", i, out)
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestStalledSessionDoesNotBlockOthers(t *testing.T) {
	c := newClient(t)
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	// A command with lots of output that nobody reads.
	stalled := c.Command(ctx, "cat", "/dev/zero")
	r, _ := stalled.StdoutPipe()
	if err := stalled.Start(); err != nil {
		t.Fatal(err)
	}
	io.ReadFull(r, make([]byte, 1000)) // it is producing, then stalls
	for i := range 20 {
		out, err := c.Command(ctx, "echo", strconv.Itoa(i)).Output()
		if err != nil || string(out) != fmt.Sprintf("%d\n", i) {
			t.Fatalf("exec %d while another stalls: %q %v", i, out, err)
		}
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if err := stalled.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, r)
	var ee *agent.ExitError
	if err := stalled.Wait(); !errors.As(err, &ee) || ee.Signal() != "SIGKILL" {
		t.Fatalf("stalled: %v", err)
	}
}

// Output the process left in its pipes is delivered even when the output
// grace ends because a background process holds the pipes open.
func TestOutputGraceKeepsBufferedOutput(t *testing.T) {
	c := newClient(t)
	ctx := testCtx(t)
	// 5 MB: the stream window (4 MiB) fills while nobody reads, the rest
	// waits in the pipe when sh exits; the background sleep holds the
	// pipe open past the grace.
	const size = 5000000
	cmd := c.Command(ctx, "sh", "-c", "head -c "+strconv.Itoa(size)+" /dev/zero; sleep 5 &")
	cmd.OutputGrace = 50 * time.Millisecond
	r, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // the grace ends while the output is stuck
	n, err := io.Copy(io.Discard, r)
	if err != nil || n != size {
		t.Fatalf("got %d bytes of %d, %v", n, size, err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
}

// blockingReader blocks in Read until release is closed.
type blockingReader struct{ release chan struct{} }

func (r blockingReader) Read([]byte) (int, error) {
	<-r.release
	return 0, io.EOF
}

// Wait does not wait for a copy blocked in the caller's Stdin.Read; that
// goroutine ends once the Read returns, and is the only one left.
func TestWaitLeavesOnlyABlockedStdinRead(t *testing.T) {
	c := newClient(t)
	ctx := testCtx(t)
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	before := runtime.NumGoroutine()
	cmd := c.Command(ctx, "sleep", "60")
	r := blockingReader{make(chan struct{})}
	cmd.Stdin = r
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !inStdinRead() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !inStdinRead() {
		t.Fatal("the stdin copy did not reach Stdin.Read within 10s")
	}
	cmd.Signal(os.Kill)
	within(t, 10*time.Second, "Wait with a Stdin that never returns", func() {
		var ee *agent.ExitError
		if err := cmd.Wait(); !errors.As(err, &ee) || ee.Signal() != "SIGKILL" {
			t.Errorf("Wait = %v, want signal SIGKILL", err)
		}
	})
	if !inStdinRead() {
		t.Error("no goroutine in Stdin.Read after Wait: the test does not test the exception")
	}
	close(r.release)
	deadline = time.Now().Add(5 * time.Second)
	for inStdinRead() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if inStdinRead() {
		t.Error("the stdin copy is still in Stdin.Read 5s after it returned")
	}
	checkGoroutines(t, before)
}

// inStdinRead reports whether a goroutine is in blockingReader.Read.
func inStdinRead() bool {
	buf := make([]byte, 1<<20)
	return strings.Contains(string(buf[:runtime.Stack(buf, true)]), "blockingReader.Read")
}

// An agent older than 0.2.0 answers exec_stdin with unknown_method: the
// command is killed rather than fed its input on the exec stream, and
// Wait says why.
func TestStdinRefusedByOldAgent(t *testing.T) {
	clientEnd, agentEnd := net.Pipe()
	killed := make(chan bool, 1)
	go fakeOldAgent(t, agentEnd, killed)
	ctx := testCtx(t)
	c, err := agent.NewClient(ctx, clientEnd)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cmd := c.Command(ctx, "cat")
	cmd.Stdin = strings.NewReader("input")
	err = cmd.Run()
	var ae *agent.Error
	if !errors.As(err, &ae) || ae.Code != protocol.CodeUnknownMethod || !strings.Contains(err.Error(), "0.2.0") {
		t.Fatalf("Run = %v, want the agent's unknown_method error naming 0.2.0", err)
	}
	select {
	case k := <-killed:
		if !k {
			t.Fatal("the command was not killed")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the fake agent saw no end of the exec")
	}
}

// fakeOldAgent serves one exec the way an agent before 0.2.0 did: it does
// not know exec_stdin. It reports on killed whether a SIGKILL came.
func fakeOldAgent(t *testing.T, conn net.Conn, killed chan<- bool) {
	defer conn.Close()
	for _, answer := range []protocol.HelloKind{protocol.KindAck, protocol.KindGo} {
		h, err := protocol.ReadHello(conn)
		if err != nil {
			t.Errorf("fake agent: handshake: %v", err)
			return
		}
		h.Kind = answer
		if err := protocol.WriteHello(conn, h); err != nil {
			return
		}
	}
	cfg := yamux.DefaultConfig()
	cfg.LogOutput = io.Discard
	sess, err := yamux.Server(conn, cfg)
	if err != nil {
		return
	}
	defer sess.Close()
	exec, err := sess.AcceptStream()
	if err != nil {
		return
	}
	if _, _, err := protocol.ReadFrame(exec, nil); err != nil {
		return
	}
	b, _ := protocol.Marshal(protocol.ExecStarted{Pid: 42})
	protocol.WriteFrame(exec, protocol.FrameResponse, b)
	stdin, err := sess.AcceptStream()
	if err != nil {
		return
	}
	protocol.ReadFrame(stdin, nil)
	b, _ = protocol.Marshal(protocol.Error{Code: protocol.CodeUnknownMethod, Message: "unknown method exec_stdin"})
	protocol.WriteFrame(stdin, protocol.FrameError, b)
	stdin.Close()
	for {
		t, p, err := protocol.ReadFrame(exec, nil)
		if err != nil {
			killed <- false
			return
		}
		if t == protocol.FrameSignal && string(p) == "SIGKILL" {
			break
		}
	}
	killed <- true
	b, _ = protocol.Marshal(protocol.ExitResult{ExitCode: -1, Signal: "SIGKILL"})
	protocol.WriteFrame(exec, protocol.FrameExit, b)
	exec.Close()
	time.Sleep(100 * time.Millisecond) // let the client read it before the session ends
}

// A client pinging often, or not at all, keeps working with the agent.
func TestKeepAliveOption(t *testing.T) {
	sock := startServer(t, server.Config{})
	for _, interval := range []time.Duration{20 * time.Millisecond, -1} {
		ctx := testCtx(t)
		conn, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		c, err := agent.NewClient(ctx, conn, agent.WithKeepAlive(interval))
		if err != nil {
			t.Fatalf("keepalive %v: %v", interval, err)
		}
		time.Sleep(200 * time.Millisecond) // several pings
		if out, err := c.Command(ctx, "echo", "alive").Output(); err != nil || string(out) != "alive\n" {
			t.Errorf("keepalive %v: %q, %v", interval, out, err)
		}
		c.Close()
	}
}
