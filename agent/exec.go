package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/supermachine-go/supermachine-kernel/agent/protocol"
)

// ErrWaitDelay is returned by Cmd.Wait when the command exited with a
// success status but its output was cut short because WaitDelay expired
// first. It is os/exec's exec.ErrWaitDelay itself, so code that checks
// errors.Is(err, exec.ErrWaitDelay) works for both kinds of command.
var ErrWaitDelay = exec.ErrWaitDelay

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
	// (/dev/null). A goroutine copies it to the process, on a stream of
	// its own, and closes the process's stdin when Stdin ends. A read
	// error other than io.EOF ends it too, and Wait returns that error if
	// the command otherwise succeeded, as os/exec does.
	//
	// Wait does not wait for Stdin to be consumed: as with an *os.File
	// given to os/exec, input left over when the process exits is not
	// read. A copy goroutine blocked in Stdin.Read when Wait returns
	// cannot be interrupted by anyone (os.Stdin on a terminal, say): it
	// ends when that Read returns, and drops what it read.
	Stdin io.Reader
	// Stdout and Stderr receive the command's output; nil discards it.
	// With TTY, all output goes to Stdout.
	//
	// As with os/exec's pipes, each has a buffer of PipeSize bytes from
	// which a goroutine writes to it, so a writer that blocks holds up
	// neither the other stream (until its own buffer is full) nor the
	// other commands of the client (flow control holds back only this
	// process). Wait waits until all output is written (or WaitDelay
	// expires) and returns the first write error if the command
	// otherwise succeeded: a write of fewer bytes without an error is
	// io.ErrShortWrite. Output after a failed write is dropped (the
	// process gets no SIGPIPE). If Stdout and Stderr are the same
	// writer, one goroutine writes both streams in the order they came.
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

	// Cancel is called when the command's context is done before the
	// command exited, as in os/exec. Command sets it to send SIGKILL to
	// the process group ([Cmd.Signal] with os.Kill); set it to stop the
	// command another way (say SIGTERM), or to nil to do nothing then
	// (WaitDelay still applies). If the command exits with a success
	// status after Cancel was called, Wait returns the context's error,
	// or the error of Cancel wrapped, unless that matches
	// os.ErrProcessDone (the command had exited already).
	Cancel func() error

	// WaitDelay, if positive, bounds what Wait spends on two kinds of
	// unexpected delay, with os/exec's meaning: a command that does not
	// exit after its context is done, and output that is not delivered
	// after the command exited (a StdoutPipe or StderrPipe nobody reads,
	// a Stdout or Stderr writer that blocks). Its clock starts when the
	// context is done or when Wait sees the exit, whichever comes first.
	// When it runs out, a command that has not exited is killed
	// (SIGKILL), the output buffers are closed (pipe reads fail, output
	// still to come is dropped) and Wait returns once a Write in
	// progress on Stdout or Stderr has returned: like os/exec, Wait
	// cannot interrupt a Write that never returns. If that cut the
	// output short of a command that otherwise succeeded and Cancel was
	// not called, Wait returns ErrWaitDelay. Zero means no bound.
	WaitDelay time.Duration

	// ProcessState holds the result after Wait.
	ProcessState *ProcessState

	ctx context.Context
	c   *Client

	started    bool
	st         *yamux.Stream
	pid        int
	wmu        sync.Mutex      // serializes control frame writes
	stdoutBuf  *outputBuffer   // where stdout frames go; nil drops them
	stderrBuf  *outputBuffer   // where stderr frames go; nil drops them
	bufs       []*outputBuffer // every output buffer, pipes included
	pipes      []*outputBuffer // those of StdoutPipe and StderrPipe
	stdinPipe  *io.PipeReader  // the read end of StdinPipe
	loop       bool            // the read loop runs in its own goroutine
	done       chan struct{}   // closed when the read loop has ended
	readErr    error           // why the read loop ended without an exit
	exit       *protocol.ExitResult
	stopCtx    func() bool   // unregisters the context's callback
	cancelDone chan struct{} // closed when that callback has finished
	stdinDone  chan struct{} // closed when the stdin copy has ended

	mu             sync.Mutex
	exited         bool // the exit frame came
	loopEnded      bool
	killed         bool // this Cmd sent SIGKILL
	waiting        bool // Wait was called
	waited         bool // Wait returned
	ctxFired       bool // the context ended before the exit
	ctxResult      error
	delay          *time.Timer   // the WaitDelay clock, once started
	delayFired     chan struct{} // closed when the clock ran out and acted
	delayErr       error         // ErrWaitDelay when the clock cut output short
	copies         int           // output copy goroutines still running
	copiesDone     chan struct{}
	copyErr        error // the first error of a copy goroutine
	stdinRefused   error // the agent cannot take stdin on a stream of its own
	stdinSt        *yamux.Stream
	stdinReading   bool // the stdin copy is in Stdin.Read
	stdinAbandoned bool // Wait is done with the stdin copy
}

// Command returns a Cmd to run name with the given arguments in the guest.
// ctx bounds the whole command, as with exec.CommandContext: when it is
// done before the command exited, Cancel is called, which by default
// makes the agent kill the process group (SIGKILL); Wait then returns the
// resulting *ExitError ("signal: SIGKILL"), or ctx's error if the command
// still exited successfully or the agent did not report the exit within
// [CancelWait].
func (c *Client) Command(ctx context.Context, name string, arg ...string) *Cmd {
	cmd := &Cmd{Path: name, Args: append([]string{name}, arg...), ctx: ctx, c: c}
	cmd.Cancel = func() error { return cmd.Signal(os.Kill) }
	return cmd
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
// a command this Cmd killed (SIGKILL through Signal, Cancel's default or
// WaitDelay).
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
	cmd.done = make(chan struct{})

	// Each output stream gets its buffer; a writer of the caller gets a
	// goroutine that copies the buffer to it.
	type copyJob struct {
		b *outputBuffer
		w io.Writer
	}
	var jobs []copyJob
	bufferOf := func(w io.Writer) *outputBuffer {
		switch w := w.(type) {
		case nil:
			return nil
		case pipeWriter:
			return w.b
		}
		b := newOutputBuffer()
		jobs = append(jobs, copyJob{b, w})
		cmd.bufs = append(cmd.bufs, b)
		return b
	}
	cmd.stdoutBuf = bufferOf(cmd.Stdout)
	if !cmd.TTY {
		if cmd.Stderr != nil && interfaceEqual(cmd.Stderr, cmd.Stdout) {
			cmd.stderrBuf = cmd.stdoutBuf
		} else {
			cmd.stderrBuf = bufferOf(cmd.Stderr)
		}
	}
	if len(jobs) > 0 {
		cmd.copies = len(jobs)
		cmd.copiesDone = make(chan struct{})
		for _, j := range jobs {
			go cmd.copyOutput(j.b, j.w)
		}
	}
	if cmd.Stdin != nil {
		cmd.stdinDone = make(chan struct{})
		go cmd.copyStdin()
	}
	if len(cmd.bufs) > 0 {
		// Output is delivered as it comes, before Wait, as with os/exec.
		cmd.loop = true
		go cmd.readLoop()
	}
	if (cmd.Cancel != nil || cmd.WaitDelay > 0) && cmd.ctx.Done() != nil {
		cmd.cancelDone = make(chan struct{})
		cmd.stopCtx = context.AfterFunc(cmd.ctx, cmd.contextDone)
	}
	return nil
}

// interfaceEqual reports whether a == b without panicking on values of
// types that cannot be compared.
func interfaceEqual(a, b any) (eq bool) {
	defer func() {
		if recover() != nil {
			eq = false
		}
	}()
	return a == b
}

// writeFrame sends one control frame on the command's stream. Only small
// control frames go there (stdin has its own stream), and the agent reads
// this stream at all times, so they never wait behind data.
func (cmd *Cmd) writeFrame(t protocol.FrameType, p []byte) error {
	cmd.wmu.Lock()
	defer cmd.wmu.Unlock()
	return protocol.WriteFrame(cmd.st, t, p)
}

// contextDone runs when the command's context ends: it calls Cancel and
// starts the WaitDelay clock, as os/exec does.
func (cmd *Cmd) contextDone() {
	defer close(cmd.cancelDone)
	var err error
	if cmd.Cancel != nil {
		if cerr := cmd.Cancel(); cerr == nil {
			err = cmd.ctx.Err()
		} else if !errors.Is(cerr, os.ErrProcessDone) {
			err = fmt.Errorf("agent: canceling %q: %w", cmd.String(), cerr)
		}
	}
	cmd.mu.Lock()
	cmd.ctxResult = err
	cmd.mu.Unlock()
	cmd.startWaitDelay()
}

// startWaitDelay starts the WaitDelay clock unless it runs already.
func (cmd *Cmd) startWaitDelay() {
	if cmd.WaitDelay <= 0 {
		return
	}
	cmd.mu.Lock()
	defer cmd.mu.Unlock()
	if cmd.delay == nil {
		fired := make(chan struct{})
		cmd.delayFired = fired
		cmd.delay = time.AfterFunc(cmd.WaitDelay, func() { cmd.waitDelayExpired(fired) })
	}
}

// waitDelayExpired kills a command that has not exited and closes the
// output buffers if output is still on its way.
func (cmd *Cmd) waitDelayExpired(fired chan struct{}) {
	defer close(fired)
	cmd.mu.Lock()
	exited := cmd.exited
	cutShort := !cmd.loopEnded || cmd.copies > 0
	cmd.mu.Unlock()
	if !exited {
		cmd.Signal(os.Kill) // an error means it is gone, or the connection
	}
	if cutShort {
		for _, b := range cmd.bufs {
			b.closeRead(os.ErrClosed)
		}
		cmd.mu.Lock()
		cmd.delayErr = ErrWaitDelay
		cmd.mu.Unlock()
	}
}

// killedNow notes that this Cmd sent SIGKILL.
func (cmd *Cmd) killedNow() {
	cmd.mu.Lock()
	cmd.killed = true
	waiting := cmd.waiting
	cmd.mu.Unlock()
	if waiting {
		cmd.waitAfterKill()
	}
}

// waitAfterKill is what Wait does once it waits for a command this Cmd
// killed. The process group is dead or dying, so output that no buffer
// has room for no longer holds up Wait: it is dropped, as a killed
// os/exec process leaves at most a pipe's worth for its reader. And the
// agent gets CancelWait to report the exit.
func (cmd *Cmd) waitAfterKill() {
	for _, b := range cmd.bufs {
		b.dropWhenFull()
	}
	cmd.st.SetReadDeadline(time.Now().Add(CancelWait))
}

// copyOutput copies the output in b to w (Stdout or Stderr), as os/exec's
// goroutine does from an OS pipe.
func (cmd *Cmd) copyOutput(b *outputBuffer, w io.Writer) {
	err := b.writeTo(w)
	if err != nil {
		b.closeRead(err) // drop the rest
	}
	cmd.mu.Lock()
	if err != nil && cmd.copyErr == nil {
		cmd.copyErr = err
	}
	cmd.copies--
	if cmd.copies == 0 {
		close(cmd.copiesDone)
	}
	cmd.mu.Unlock()
}

// copyStdin sends Stdin on an exec_stdin stream, so that a process that
// does not read its input holds up only that stream. Agents older than
// 0.2.0 do not know exec_stdin; they took stdin in order with the control
// frames on the exec stream, where input the process does not read holds
// up signals and cancellation. This client does not do that: the command
// is killed and Wait says why.
func (cmd *Cmd) copyStdin() {
	defer close(cmd.stdinDone)
	st, err := cmd.c.sess.OpenStream()
	if err != nil {
		return // the connection is gone; Wait reports it
	}
	cmd.mu.Lock()
	abandoned := cmd.stdinAbandoned
	if !abandoned {
		cmd.stdinSt = st
	}
	cmd.mu.Unlock()
	defer st.Close()
	if abandoned {
		return
	}
	req := &protocol.Request{Method: protocol.MethodExecStdin, ExecStdin: &protocol.ExecStdinRequest{Stream: cmd.st.StreamID()}}
	b, _ := protocol.Marshal(req)
	if protocol.WriteFrame(st, protocol.FrameRequest, b) != nil {
		return
	}
	// The answer tells whether the agent takes stdin this way. The
	// process runs meanwhile; its input waits in its pipe anyway.
	if err := readResponse(st, nil); err != nil {
		var ae *Error
		if errors.As(err, &ae) && ae.Code == protocol.CodeUnknownMethod {
			cmd.mu.Lock()
			cmd.stdinRefused = fmt.Errorf("agent: %q: the agent is older than 0.2.0 and cannot take Stdin on a stream of its own (exec_stdin): %w", cmd.String(), err)
			cmd.mu.Unlock()
			cmd.Signal(os.Kill)
		}
		return // else the process is gone, or the connection
	}
	bp := stdinBufPool.Get().(*[]byte)
	defer stdinBufPool.Put(bp)
	buf := *bp
	for {
		if !cmd.stdinState(true) {
			return
		}
		n, rerr := cmd.Stdin.Read(buf[protocol.HeaderSize:])
		if !cmd.stdinState(false) {
			return // Wait has returned: drop what was read
		}
		if n > 0 {
			protocol.PutFrameHeader(buf, protocol.FrameStdin, n)
			if _, err := st.Write(buf[:protocol.HeaderSize+n]); err != nil {
				return // the process exited, or Wait closed the stream
			}
		}
		if rerr != nil {
			// A StdinPipe read end fails with io.ErrClosedPipe only
			// because Wait closed it: that is the end of input, not an
			// error of the caller's.
			closedByWait := cmd.stdinPipe != nil && errors.Is(rerr, io.ErrClosedPipe)
			if rerr != io.EOF && !closedByWait {
				cmd.mu.Lock()
				if cmd.copyErr == nil {
					cmd.copyErr = rerr
				}
				cmd.mu.Unlock()
			}
			// End of input: close the process's stdin.
			protocol.PutFrameHeader(buf, protocol.FrameStdinEOF, 0)
			st.Write(buf[:protocol.HeaderSize])
			return
		}
	}
}

// stdinState records whether the stdin copy is in Stdin.Read, and
// reports false once Wait is done with it.
func (cmd *Cmd) stdinState(reading bool) bool {
	cmd.mu.Lock()
	defer cmd.mu.Unlock()
	cmd.stdinReading = reading
	return !cmd.stdinAbandoned
}

var stdinBufPool = sync.Pool{New: func() any {
	b := make([]byte, protocol.HeaderSize+64<<10)
	return &b
}}

// readLoop reads the exec stream: output frames go into their buffers
// (or are dropped if nobody asked for them), until the exit frame.
func (cmd *Cmd) readLoop() {
	defer func() {
		// The output is complete: readers see EOF once they have read
		// the buffers, as with an OS pipe when the process exits.
		for _, b := range cmd.bufs {
			b.closeWrite()
		}
		cmd.mu.Lock()
		cmd.loopEnded = true
		cmd.mu.Unlock()
		close(cmd.done)
	}()
	for {
		t, n, err := protocol.ReadFrameHeader(cmd.st)
		if err != nil {
			cmd.readErr = err
			return
		}
		var b *outputBuffer
		switch t {
		case protocol.FrameStdout:
			b = cmd.stdoutBuf
		case protocol.FrameStderr:
			b = cmd.stderrBuf
		case protocol.FrameExit, protocol.FrameError:
			p := make([]byte, n)
			if _, err := io.ReadFull(cmd.st, p); err != nil {
				cmd.readErr = err
				return
			}
			if t == protocol.FrameError {
				cmd.readErr = protocol.DecodeError(p)
				return
			}
			exit, err := protocol.DecodeExit(p)
			cmd.mu.Lock()
			cmd.exit, cmd.readErr, cmd.exited = exit, err, err == nil
			cmd.mu.Unlock()
			return
		default:
			cmd.readErr = fmt.Errorf("%w: unexpected %v frame during exec", protocol.ErrMalformed, t)
			return
		}
		if b == nil {
			_, err = io.CopyN(io.Discard, cmd.st, int64(n))
		} else {
			err = b.fill(cmd.st, n)
		}
		if err != nil {
			cmd.readErr = err
			return
		}
	}
}

// Wait waits for the command to exit and for its output to be delivered,
// as os/exec's Wait. A command that exits with a non-zero status, dies of
// a signal or times out returns an *ExitError. If it succeeded, Wait
// returns, in this order: the context's error if Cancel was called (see
// Cancel), ErrWaitDelay if WaitDelay cut the output short, or the first
// error of the goroutines copying Stdin, Stdout and Stderr. Those
// goroutines have ended when Wait returns, except one blocked in the
// caller's Stdin.Read (see Stdin). Wait closes the pipes of StdinPipe,
// StdoutPipe and StderrPipe; calling it twice is an error.
func (cmd *Cmd) Wait() error {
	if cmd.st == nil {
		return errors.New("agent: not started")
	}
	cmd.mu.Lock()
	if cmd.waiting {
		cmd.mu.Unlock()
		return errors.New("agent: Wait was already called")
	}
	cmd.waiting = true
	killed := cmd.killed
	cmd.mu.Unlock()
	if killed {
		cmd.waitAfterKill()
	}
	err := cmd.wait()
	cmd.mu.Lock()
	cmd.waited = true
	cmd.mu.Unlock()
	return err
}

func (cmd *Cmd) wait() error {
	if !cmd.loop {
		// Without output nobody needs the stream before Wait: read it
		// here, which spares a goroutine switch on the way to the exit
		// frame.
		cmd.readLoop()
	}
	<-cmd.done
	// The process has exited (or the connection failed). Let a Cancel
	// in progress finish, then give the output WaitDelay unless the
	// context started that clock already.
	if cmd.stopCtx != nil && !cmd.stopCtx() {
		<-cmd.cancelDone
		cmd.mu.Lock()
		cmd.ctxFired = true
		cmd.mu.Unlock()
	}
	if cmd.copiesDone != nil {
		cmd.startWaitDelay()
	}
	cmd.mu.Lock()
	delay, fired := cmd.delay, cmd.delayFired
	cmd.mu.Unlock()
	if cmd.copiesDone != nil {
		if fired != nil {
			select {
			case <-cmd.copiesDone:
			case <-fired:
				<-cmd.copiesDone // ends once a Write in progress returns
			}
		} else {
			<-cmd.copiesDone
		}
	}
	if delay != nil && !delay.Stop() {
		<-fired
	}
	cmd.closePipes()
	cmd.endStdin()
	// The agent has said all; our FIN can go out in the background.
	go func() {
		cmd.wmu.Lock()
		cmd.st.Close()
		cmd.wmu.Unlock()
	}()

	cmd.mu.Lock()
	defer cmd.mu.Unlock()
	if cmd.stdinRefused != nil {
		return cmd.stdinRefused
	}
	if cmd.exit == nil {
		if cmd.ctxFired {
			return cmd.ctx.Err()
		}
		var ae *Error
		if errors.As(cmd.readErr, &ae) {
			return cmd.readErr
		}
		if errors.Is(cmd.readErr, yamux.ErrTimeout) {
			return fmt.Errorf("%w: the agent did not report the exit of %q within %v of SIGKILL", ErrConnectionLost, cmd.String(), CancelWait)
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
	if cmd.ctxResult != nil {
		return cmd.ctxResult
	}
	if cmd.delayErr != nil {
		return cmd.delayErr
	}
	return cmd.copyErr
}

// endStdin ends the stdin copy: the deadline and the close of its stream
// fail a write held up by flow control, or the wait for the agent's
// answer. Wait waits for the copy to end unless it is blocked in the
// caller's Stdin.Read, which nothing can interrupt.
func (cmd *Cmd) endStdin() {
	if cmd.stdinDone == nil {
		return
	}
	cmd.mu.Lock()
	cmd.stdinAbandoned = true
	st := cmd.stdinSt
	inCallersRead := cmd.stdinReading && cmd.stdinPipe == nil
	cmd.mu.Unlock()
	if st != nil {
		st.SetDeadline(time.Now())
		st.Close()
	}
	if !inCallersRead {
		<-cmd.stdinDone
	}
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
	cmd.stdinPipe = pr
	return pw, nil
}

// pipeWriter stands in Stdout or Stderr for the buffer of StdoutPipe or
// StderrPipe, which the read loop fills directly. Setting Stderr to the
// Stdout of StdoutPipe sends both streams to that pipe, as in os/exec.
type pipeWriter struct{ b *outputBuffer }

func (pipeWriter) Write([]byte) (int, error) {
	return 0, errors.New("agent: only the command writes to its output pipe")
}

// outPipe makes the pipe of StdoutPipe or StderrPipe.
func (cmd *Cmd) outPipe() (io.ReadCloser, io.Writer) {
	b := newOutputBuffer()
	cmd.pipes = append(cmd.pipes, b)
	cmd.bufs = append(cmd.bufs, b)
	return pipeReader{b}, pipeWriter{b}
}

// StdoutPipe returns a pipe that delivers the command's standard output
// after Start. It buffers PipeSize bytes, as an OS pipe, and reaches EOF
// when the output ends (the process exited). Read it before calling Wait,
// which closes it (reads then fail).
func (cmd *Cmd) StdoutPipe() (io.ReadCloser, error) {
	if cmd.Stdout != nil {
		return nil, errors.New("agent: Stdout already set")
	}
	if cmd.started {
		return nil, errors.New("agent: StdoutPipe after Start")
	}
	r, w := cmd.outPipe()
	cmd.Stdout = w
	return r, nil
}

// StderrPipe returns a pipe that delivers the command's standard error
// after Start. It buffers PipeSize bytes, as an OS pipe, so reading
// StdoutPipe to its end and then StderrPipe works while the error output
// fits in it. It reaches EOF when the output ends (the process exited).
// Read it before calling Wait, which closes it (reads then fail).
func (cmd *Cmd) StderrPipe() (io.ReadCloser, error) {
	if cmd.Stderr != nil {
		return nil, errors.New("agent: Stderr already set")
	}
	if cmd.started {
		return nil, errors.New("agent: StderrPipe after Start")
	}
	r, w := cmd.outPipe()
	cmd.Stderr = w
	return r, nil
}

// closePipes closes the caller's ends of the pipes.
func (cmd *Cmd) closePipes() {
	for _, b := range cmd.pipes {
		b.closeRead(os.ErrClosed)
	}
	if cmd.stdinPipe != nil {
		cmd.stdinPipe.Close()
	}
}

// Signal sends sig to the command's process group in the guest. sig is a
// syscall.Signal (mapped by name, so a SIGUSR1 from a macOS host is the
// guest's SIGUSR1) or a [Signal] name such as "SIGTERM"; it must be one of
// protocol.SignalNames. The signal is sent at once, even while the process
// is not reading the input given to it. Once the agent has reported the
// exit, Signal returns os.ErrProcessDone.
func (cmd *Cmd) Signal(sig os.Signal) error {
	if cmd.st == nil {
		return errors.New("agent: Signal before Start")
	}
	name, err := signalName(sig)
	if err != nil {
		return err
	}
	if err := cmd.control(protocol.FrameSignal, []byte(name)); err != nil {
		return err
	}
	if name == "SIGKILL" {
		cmd.killedNow()
	}
	return nil
}

// control sends a control frame, or reports why it cannot.
func (cmd *Cmd) control(t protocol.FrameType, p []byte) error {
	cmd.mu.Lock()
	over := cmd.waited || cmd.exited
	cmd.mu.Unlock()
	if over {
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
