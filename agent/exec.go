package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/supermachine-go/supermachine-kernel/agent/protocol"
)

// Cmd is a command to run in the guest, shaped like os/exec.Cmd. Create it
// with [Client.Command], set its fields, then call Run, Output,
// CombinedOutput, or Start and Wait. A Cmd cannot be reused.
type Cmd struct {
	// Path is the program to run. Without a slash it is looked up in the
	// PATH of the command's environment, in the guest.
	Path string
	// Args holds the command line, Args[0] included. Command sets it to
	// the name followed by the arguments.
	Args []string
	// Env are KEY=value entries added to (or replacing entries of) the
	// agent's default environment: PATH=/usr/local/sbin:/usr/local/bin:
	// /usr/sbin:/usr/bin:/sbin:/bin, HOME of the user, and TERM=xterm with
	// a TTY.
	Env []string
	// Dir is the working directory in the guest; empty means "/" (or the
	// home directory of User, if set).
	Dir string
	// User runs the command as "uid", "uid:gid", "name" or "name:group",
	// resolved with the guest's /etc/passwd and /etc/group. Empty means
	// the agent's own user (root).
	User string

	// Stdin is the command's standard input; nil means an empty input
	// (/dev/null). When it is exhausted the agent closes the process's
	// stdin.
	Stdin io.Reader
	// Stdout and Stderr receive the command's output; nil discards it.
	// With TTY, all output goes to Stdout. A writer that blocks slows only
	// this command's output (flow control), never the other calls.
	Stdout io.Writer
	Stderr io.Writer

	// TTY runs the command on a pseudo-terminal of Rows x Cols (default
	// 24 x 80), which Resize changes later.
	TTY  bool
	Rows uint16
	Cols uint16

	// Timeout, if positive, makes the agent kill the command's process
	// group after that long; Wait then returns an *ExitError matching
	// ErrTimedOut.
	Timeout time.Duration

	// OutputGrace is how long the agent keeps forwarding output after the
	// process exited while processes it started in the background still
	// hold the output open (then their output is cut off and Wait
	// returns). Zero means the agent's default, 1 second; a negative
	// value means until they close it, as os/exec does without WaitDelay.
	OutputGrace time.Duration

	// ProcessState holds the result after Wait.
	ProcessState *ProcessState

	ctx context.Context
	c   *Client

	started    bool
	st         *yamux.Stream
	stopCtx    func() bool
	pid        int
	wmu        sync.Mutex // serializes control frame writes
	done       chan struct{}
	readErr    error
	copyErr    error // the first error of a Stdout or Stderr writer
	exit       *protocol.ExitResult
	closers    []io.Closer // pipe ends closed by Wait and by a failed Start
	outPipes   []io.Closer // pipe ends closed when the output ends
	ownOut     map[io.Writer]bool
	stdinSt    chan *yamux.Stream // the exec_stdin stream, once opened
	waitMu     sync.Mutex
	waitCalled bool
	waited     bool // Wait returned
}

// Command returns a Cmd to run name with the given arguments in the guest.
// ctx bounds the whole command, as with exec.CommandContext: when it is done
// before the command finishes, the agent kills the process group
// (SIGKILL) and Wait returns the resulting *ExitError ("signal: SIGKILL"),
// or ctx's error if the command still exited successfully or the agent did
// not report the exit within [CancelWait].
func (c *Client) Command(ctx context.Context, name string, arg ...string) *Cmd {
	return &Cmd{Path: name, Args: append([]string{name}, arg...), ctx: ctx, c: c}
}

// String returns the command line, for logs.
func (cmd *Cmd) String() string {
	return strings.Join(cmd.Args, " ")
}

// Pid returns the guest process ID after Start, or 0.
func (cmd *Cmd) Pid() int {
	return cmd.pid
}

// CancelWait is how long Wait waits for the agent to report the exit of
// a command it was told to kill because the command's context ended.
const CancelWait = 5 * time.Second

// Start starts the command and returns once the agent has started the
// process, or with the agent's error: a program not found in PATH, a
// missing working directory or an unknown user fail here, as *Error
// values matching fs.ErrNotExist and friends. If Start fails, the pipes of
// StdinPipe, StdoutPipe and StderrPipe are closed, as with os/exec.
func (cmd *Cmd) Start() error {
	if cmd.started {
		return errors.New("agent: already started")
	}
	cmd.started = true
	if err := cmd.start(); err != nil {
		cmd.closePipes()
		return err
	}
	return nil
}

func (cmd *Cmd) start() error {
	if cmd.c == nil {
		return errors.New("agent: Cmd not created by Client.Command")
	}
	if cmd.ctx == nil {
		cmd.ctx = context.Background()
	}
	args := cmd.Args
	if len(args) == 0 {
		args = []string{cmd.Path}
	}
	req := &protocol.Request{Method: protocol.MethodExec, Exec: &protocol.ExecRequest{
		Path: cmd.Path, Args: args, Env: cmd.Env, Dir: cmd.Dir, User: cmd.User,
		TTY: cmd.TTY, Rows: cmd.Rows, Cols: cmd.Cols,
		Stdin: cmd.Stdin != nil, Stdout: cmd.Stdout != nil, Stderr: cmd.Stderr != nil && !cmd.TTY,
		TimeoutNS: int64(cmd.Timeout), OutputGraceNS: int64(cmd.OutputGrace),
	}}
	if cmd.TTY && cmd.Stdin != nil {
		req.Exec.Stdout = true // a tty has one stream
	}
	if err := req.Validate(); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	st, stop, err := cmd.c.openStream(cmd.ctx, req)
	if err != nil {
		return err
	}
	var started protocol.ExecStarted
	err = readResponse(st, &started)
	if !stop() && err == nil {
		// ctx ended just as the process started: closing the stream
		// makes the agent kill it.
		err = cmd.ctx.Err()
	}
	if err != nil {
		st.Close()
		var ae *Error
		if errors.As(err, &ae) {
			return err
		}
		return ctxErr(cmd.ctx, cmd.c.connErr(err))
	}
	cmd.st, cmd.pid = st, started.Pid
	// When ctx ends: kill the process group and half-close the stream
	// (which the agent takes as a kill as well), then give the agent
	// CancelWait to report the exit.
	cmd.stopCtx = context.AfterFunc(cmd.ctx, func() {
		cmd.writeFrame(protocol.FrameSignal, []byte("SIGKILL"))
		st.Close()
		st.SetReadDeadline(time.Now().Add(CancelWait))
	})
	cmd.done = make(chan struct{})
	if cmd.Stdin != nil {
		cmd.stdinSt = make(chan *yamux.Stream, 1)
		go cmd.copyStdin()
	}
	if len(cmd.outPipes) > 0 {
		// The caller reads the pipes before Wait: deliver output now.
		go cmd.readLoop()
	}
	return nil
}

// writeFrame sends one control frame on the command's stream. Only small
// control frames go there (stdin has its own stream), so flow control
// never holds them up behind data.
func (cmd *Cmd) writeFrame(t protocol.FrameType, p []byte) error {
	cmd.wmu.Lock()
	defer cmd.wmu.Unlock()
	return protocol.WriteFrame(cmd.st, t, p)
}

// copyStdin sends Stdin on an exec_stdin stream, so that a process that
// does not read its input holds up only that stream. An agent older than
// 0.2.0 does not know exec_stdin: the input then goes on the exec stream,
// as those agents expect.
func (cmd *Cmd) copyStdin() {
	st, err := cmd.c.sess.OpenStream()
	if err != nil {
		close(cmd.stdinSt)
		return
	}
	cmd.stdinSt <- st
	defer st.Close()
	req := &protocol.Request{Method: protocol.MethodExecStdin, ExecStdin: &protocol.ExecStdinRequest{Stream: cmd.st.StreamID()}}
	b, _ := protocol.Marshal(req)
	if protocol.WriteFrame(st, protocol.FrameRequest, b) != nil {
		return
	}
	// Wait for the answer before sending: what an agent refuses must go
	// elsewhere. The process runs meanwhile; its input waits in its pipe
	// anyway.
	var write func([]byte) error
	err = readResponse(st, nil)
	var ae *Error
	switch {
	case err == nil:
		write = func(b []byte) error { _, err := st.Write(b); return err }
		// The agent closes the stream when the process exits: stop
		// sending then.
		go func() {
			for {
				if _, _, err := protocol.ReadFrame(st, nil); err != nil {
					st.Close()
					return
				}
			}
		}()
	case errors.As(err, &ae) && ae.Code == protocol.CodeUnknownMethod:
		write = func(b []byte) error {
			cmd.wmu.Lock()
			defer cmd.wmu.Unlock()
			_, err := cmd.st.Write(b)
			return err
		}
	default:
		return // the process is gone, or the connection
	}
	bp := stdinBufPool.Get().(*[]byte)
	defer stdinBufPool.Put(bp)
	buf := *bp
	for {
		n, err := cmd.Stdin.Read(buf[protocol.HeaderSize:])
		if n > 0 {
			protocol.PutFrameHeader(buf, protocol.FrameStdin, n)
			if write(buf[:protocol.HeaderSize+n]) != nil {
				return
			}
		}
		if err != nil {
			// End of input (or a read error): close the process's stdin.
			protocol.PutFrameHeader(buf, protocol.FrameStdinEOF, 0)
			write(buf[:protocol.HeaderSize])
			return
		}
	}
}

var stdinBufPool = sync.Pool{New: func() any {
	b := make([]byte, protocol.HeaderSize+64<<10)
	return &b
}}

func (cmd *Cmd) readLoop() {
	defer close(cmd.done)
	defer func() {
		// The output is complete: readers of StdoutPipe and StderrPipe
		// see EOF, as with an OS pipe when the process exits.
		for _, c := range cmd.outPipes {
			c.Close()
		}
	}()
	var outErr, errErr error // per stream: after a failed write, output is dropped
	write := func(w io.Writer, p []byte, werr *error) {
		if w == nil || *werr != nil {
			return
		}
		if _, err := w.Write(p); err != nil {
			*werr = err
			if !cmd.ownOut[w] && cmd.copyErr == nil {
				cmd.copyErr = err
			}
		}
	}
	buf := make([]byte, 256<<10)
	for {
		t, p, err := protocol.ReadFrame(cmd.st, buf)
		if err != nil {
			cmd.readErr = err
			return
		}
		switch t {
		case protocol.FrameStdout:
			write(cmd.Stdout, p, &outErr)
		case protocol.FrameStderr:
			write(cmd.Stderr, p, &errErr)
		case protocol.FrameExit:
			cmd.exit, cmd.readErr = protocol.DecodeExit(p)
			return
		case protocol.FrameError:
			cmd.readErr = protocol.DecodeError(p)
			return
		default:
			cmd.readErr = fmt.Errorf("%w: unexpected %v frame during exec", protocol.ErrMalformed, t)
			return
		}
	}
}

// Wait waits for the command to exit and for its output to be delivered.
// A command that exits with a non-zero status, dies of a signal or times
// out returns an *ExitError. If the command succeeded but writing its
// output to Stdout or Stderr failed, Wait returns the first such error (and
// the rest of that output was dropped), as os/exec does. Wait does not
// wait for Stdin to be consumed: input left over when the process exits
// is dropped. Wait closes the pipes of StdinPipe, StdoutPipe and
// StderrPipe; calling it twice is an error.
func (cmd *Cmd) Wait() error {
	if cmd.st == nil {
		return errors.New("agent: not started")
	}
	cmd.waitMu.Lock()
	if cmd.waitCalled {
		cmd.waitMu.Unlock()
		return errors.New("agent: Wait was already called")
	}
	cmd.waitCalled = true
	cmd.waitMu.Unlock()
	err := cmd.wait()
	cmd.waitMu.Lock()
	cmd.waited = true
	cmd.waitMu.Unlock()
	return err
}

func (cmd *Cmd) wait() error {
	if len(cmd.outPipes) == 0 {
		// Without pipes nobody needs the output before Wait: read it
		// here (flow control holds the process back meanwhile), which
		// spares a goroutine switch on the way to the exit frame.
		cmd.readLoop()
	}
	<-cmd.done
	canceled := !cmd.stopCtx()
	// The agent has said all; our FIN can go out in the background.
	go func() {
		cmd.wmu.Lock()
		cmd.st.Close()
		cmd.wmu.Unlock()
	}()
	if cmd.stdinSt != nil {
		// Unblock a stdin copy held up by flow control.
		select {
		case st, ok := <-cmd.stdinSt:
			if ok {
				st.Close()
			}
		default:
		}
	}
	cmd.closePipes()
	if cmd.exit == nil {
		if canceled {
			return cmd.ctx.Err()
		}
		var ae *Error
		if errors.As(cmd.readErr, &ae) {
			return cmd.readErr
		}
		if cmd.readErr == nil || errors.Is(cmd.readErr, io.EOF) {
			return fmt.Errorf("%w before %q exited", ErrConnectionLost, cmd.String())
		}
		return cmd.c.connErr(cmd.readErr)
	}
	x := cmd.exit
	cmd.ProcessState = &ProcessState{
		pid: cmd.pid, exitCode: x.ExitCode, signal: x.Signal,
		duration: time.Duration(x.DurationNS), maxRSS: x.MaxRSS, timedOut: x.TimedOut,
	}
	if !cmd.ProcessState.Success() {
		return &ExitError{ProcessState: cmd.ProcessState}
	}
	if canceled {
		// Told to kill it, the command still succeeded: as with
		// exec.CommandContext, report the cancellation.
		return cmd.ctx.Err()
	}
	return cmd.copyErr
}

// Run starts the command and waits for it.
func (cmd *Cmd) Run() error {
	if err := cmd.Start(); err != nil {
		return err
	}
	return cmd.Wait()
}

// Output runs the command and returns its standard output. If Stderr is
// nil, the tail of the error output is kept in the *ExitError's Stderr.
func (cmd *Cmd) Output() ([]byte, error) {
	if cmd.Stdout != nil {
		return nil, errors.New("agent: Stdout already set")
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	var stderr *tailBuffer
	if cmd.Stderr == nil {
		stderr = &tailBuffer{max: 64 << 10}
		cmd.Stderr = stderr
	}
	err := cmd.Run()
	var ee *ExitError
	if stderr != nil && errors.As(err, &ee) {
		ee.Stderr = stderr.b
	}
	return out.Bytes(), err
}

// CombinedOutput runs the command and returns its standard output and
// standard error interleaved as they arrived.
func (cmd *Cmd) CombinedOutput() ([]byte, error) {
	if cmd.Stdout != nil || cmd.Stderr != nil {
		return nil, errors.New("agent: Stdout or Stderr already set")
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	return out.Bytes(), err
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	b   []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(p), nil
}

// StdinPipe returns a pipe connected to the command's standard input after
// Start. Closing it closes the process's stdin. Wait (or a failed Start)
// closes it too; writes then fail.
func (cmd *Cmd) StdinPipe() (io.WriteCloser, error) {
	if cmd.Stdin != nil {
		return nil, errors.New("agent: Stdin already set")
	}
	if cmd.started {
		return nil, errors.New("agent: StdinPipe after Start")
	}
	pr, pw := io.Pipe()
	cmd.Stdin = pr
	cmd.closers = append(cmd.closers, pr)
	return pw, nil
}

// outPipe makes the pipe of StdoutPipe or StderrPipe.
func (cmd *Cmd) outPipe() (io.ReadCloser, *io.PipeWriter) {
	pr, pw := io.Pipe()
	cmd.outPipes = append(cmd.outPipes, pw)
	cmd.closers = append(cmd.closers, pr)
	if cmd.ownOut == nil {
		cmd.ownOut = make(map[io.Writer]bool)
	}
	cmd.ownOut[pw] = true // a reader that stopped reading is no copy error
	return pr, pw
}

// StdoutPipe returns a pipe that delivers the command's standard output
// after Start. It reaches EOF when the output ends (the process exited);
// read it before calling Wait, which closes it (reads then fail).
func (cmd *Cmd) StdoutPipe() (io.ReadCloser, error) {
	if cmd.Stdout != nil {
		return nil, errors.New("agent: Stdout already set")
	}
	if cmd.started {
		return nil, errors.New("agent: StdoutPipe after Start")
	}
	pr, pw := cmd.outPipe()
	cmd.Stdout = pw
	return pr, nil
}

// StderrPipe returns a pipe that delivers the command's standard error
// after Start. It reaches EOF when the output ends (the process exited);
// read it before calling Wait, which closes it (reads then fail).
func (cmd *Cmd) StderrPipe() (io.ReadCloser, error) {
	if cmd.Stderr != nil {
		return nil, errors.New("agent: Stderr already set")
	}
	if cmd.started {
		return nil, errors.New("agent: StderrPipe after Start")
	}
	pr, pw := cmd.outPipe()
	cmd.Stderr = pw
	return pr, nil
}

func (cmd *Cmd) closePipes() {
	for _, c := range cmd.closers {
		c.Close()
	}
	for _, c := range cmd.outPipes {
		c.Close()
	}
}

// Signal sends sig to the command's process group in the guest. sig is a
// syscall.Signal (mapped by name, so a SIGUSR1 from a macOS host is the
// guest's SIGUSR1) or a [Signal] name such as "SIGTERM"; it must be one of
// protocol.SignalNames. The signal is sent at once, even while the process
// is not reading the input given to it. After Wait, Signal returns
// os.ErrProcessDone.
func (cmd *Cmd) Signal(sig os.Signal) error {
	if cmd.st == nil {
		return errors.New("agent: Signal before Start")
	}
	name, err := signalName(sig)
	if err != nil {
		return err
	}
	return cmd.control(protocol.FrameSignal, []byte(name))
}

// control sends a control frame, or reports why it cannot.
func (cmd *Cmd) control(t protocol.FrameType, p []byte) error {
	cmd.waitMu.Lock()
	waited := cmd.waited
	cmd.waitMu.Unlock()
	if waited {
		return os.ErrProcessDone
	}
	if err := cmd.writeFrame(t, p); err != nil {
		select {
		case <-cmd.done:
			return os.ErrProcessDone
		default:
		}
		return cmd.c.connErr(err)
	}
	return nil
}

// Resize changes the window size of the command's terminal (TTY only).
// It travels apart from stdin: input written after Resize may reach the
// process before the new size does.
func (cmd *Cmd) Resize(rows, cols uint16) error {
	if cmd.st == nil {
		return errors.New("agent: Resize before Start")
	}
	if !cmd.TTY {
		return errors.New("agent: Resize without TTY")
	}
	return cmd.control(protocol.FrameResize, protocol.EncodeResize(rows, cols))
}

// Signal is a signal named as in the guest, e.g. "SIGTERM". It implements
// os.Signal, so it can be passed to Cmd.Signal from any host OS.
type Signal string

// Signal implements os.Signal.
func (Signal) Signal() {}

// String returns the name.
func (s Signal) String() string { return string(s) }

func signalName(sig os.Signal) (string, error) {
	if s, ok := sig.(Signal); ok {
		name := strings.ToUpper(string(s))
		if !strings.HasPrefix(name, "SIG") {
			name = "SIG" + name
		}
		if protocol.SignalNumber(name) == 0 {
			return "", fmt.Errorf("agent: unknown signal name %q (want one of protocol.SignalNames)", s)
		}
		return name, nil
	}
	name := hostSignalName(sig)
	if protocol.SignalNumber(name) == 0 {
		return "", fmt.Errorf("agent: cannot send signal %v to the guest: not one of protocol.SignalNames", sig)
	}
	return name, nil
}

// ProcessState describes a command that exited, like os.ProcessState.
type ProcessState struct {
	pid      int
	exitCode int
	signal   string
	duration time.Duration
	maxRSS   int64
	timedOut bool
}

// Pid returns the guest process ID.
func (p *ProcessState) Pid() int { return p.pid }

// ExitCode returns the exit status, or -1 if a signal killed the process.
func (p *ProcessState) ExitCode() int { return p.exitCode }

// Exited reports whether the process exited by itself (not by a signal).
func (p *ProcessState) Exited() bool { return p.signal == "" }

// Success reports whether the process exited with status 0.
func (p *ProcessState) Success() bool { return p.exitCode == 0 && p.signal == "" && !p.timedOut }

// Signal returns the name of the signal that killed the process, e.g.
// "SIGKILL", or "" if it exited.
func (p *ProcessState) Signal() string { return p.signal }

// Duration returns the wall-clock time the process ran.
func (p *ProcessState) Duration() time.Duration { return p.duration }

// MaxRSS returns the peak resident set size of the process in bytes.
func (p *ProcessState) MaxRSS() int64 { return p.maxRSS }

// TimedOut reports whether the agent killed the process at its Timeout.
func (p *ProcessState) TimedOut() bool { return p.timedOut }

// String returns "exit status N", "signal: NAME" or "timed out (...)".
func (p *ProcessState) String() string {
	s := fmt.Sprintf("exit status %d", p.exitCode)
	if p.signal != "" {
		s = "signal: " + p.signal
	}
	if p.timedOut {
		s = "timed out (" + s + ")"
	}
	return s
}

// ExitError is returned by Wait and Run when the command did not succeed;
// test for it with errors.As. errors.Is(err, ErrTimedOut) reports whether
// the command timed out.
type ExitError struct {
	*ProcessState
	// Stderr holds the tail of the error output when the command ran
	// through Output with Stderr unset.
	Stderr []byte
}

// Error returns the state, e.g. "exit status 1".
func (e *ExitError) Error() string {
	return e.ProcessState.String()
}

// Is reports whether target is ErrTimedOut and the command timed out.
func (e *ExitError) Is(target error) bool {
	return target == ErrTimedOut && e.timedOut
}
