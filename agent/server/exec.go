//go:build linux

package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/creack/pty"
	"github.com/hashicorp/yamux"
	"github.com/supermachine-go/supermachine-kernel/agent/protocol"
	"golang.org/x/sys/unix"
)

// DefaultPath is the PATH of the default exec environment.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// outputChunk is the largest stdout/stderr or data frame payload the
// server sends.
const outputChunk = 256 << 10

// bufPool holds buffers of a frame header plus outputChunk bytes, shared by
// output pumps and file transfers: a short exec then costs no large
// allocation, which keeps the agent's heap (and RSS) small.
var bufPool = sync.Pool{New: func() any {
	b := make([]byte, protocol.HeaderSize+outputChunk)
	return &b
}}

func getBuf() *[]byte  { return bufPool.Get().(*[]byte) }
func putBuf(b *[]byte) { bufPool.Put(b) }

// frameWriter serializes frame writes of several goroutines on one stream.
type frameWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (fw *frameWriter) write(t protocol.FrameType, p []byte) error {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	return protocol.WriteFrame(fw.w, t, p)
}

// writeRaw writes a buffer that already holds a frame header.
func (fw *frameWriter) writeRaw(b []byte) error {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	_, err := fw.w.Write(b)
	return err
}

// execError is an exec failure before the process started.
func execError(err error, op, path string) *protocol.Error {
	e := protocol.ErrorFrom(err, op, path)
	if e.Op == "" {
		e.Op = op
	}
	return e
}

// exec serves one exec request on st, a stream of sess.
func (s *Server) exec(ctx context.Context, sess *yamux.Session, st *yamux.Stream, req *protocol.ExecRequest) {
	fw := &frameWriter{w: st}
	name := req.Path
	if name == "" {
		name = req.Args[0]
	}
	var u *execUser
	var err error
	if req.User != "" || os.Geteuid() == 0 {
		if u, err = lookupUser(s.cfg.Root, req.User); err != nil {
			sendError(st, execError(err, "user", req.User))
			return
		}
	}
	home := "/"
	if u != nil {
		home = u.home
	} else if h, err := os.UserHomeDir(); err == nil {
		home = h
	}
	defEnv := []string{"PATH=" + DefaultPath, "HOME=" + home}
	if req.TTY {
		defEnv = append(defEnv, "TERM=xterm")
	}
	env := mergeEnv(defEnv, req.Env)
	dir := req.Dir
	if dir == "" {
		dir = "/"
		if fi, err := os.Stat(home); err == nil && fi.IsDir() && req.User != "" {
			dir = home
		}
	}
	if fi, err := os.Stat(dir); err != nil {
		sendError(st, execError(err, "chdir", dir))
		return
	} else if !fi.IsDir() {
		sendError(st, &protocol.Error{Code: protocol.CodeNotDir, Op: "chdir", Path: dir, Message: "not a directory"})
		return
	}
	path, err := lookPath(name, envValue(env, "PATH"), dir)
	if err != nil {
		sendError(st, execError(err, "exec", name))
		return
	}

	sys := &syscall.SysProcAttr{Setsid: true}
	if u != nil && (req.User != "" || os.Geteuid() == 0) {
		sys.Credential = &syscall.Credential{Uid: u.uid, Gid: u.gid, Groups: u.groups}
		if req.User == "" {
			sys.Credential = nil // run as the agent itself
		}
	}

	// Set up stdio. parent ends are read/written here, child ends are
	// handed to the process and closed after the fork; streams not
	// attached are the server's shared /dev/null.
	var (
		fds        []uintptr // the child's stdin, stdout, stderr
		closeAfter []*os.File
		stdinW     io.WriteCloser // nil if stdin is not attached
		outputs    []*os.File     // read ends, in frame order: stdout, stderr
		outTypes   []protocol.FrameType
		ptmx       *os.File
	)
	cleanup := func() {
		for _, f := range closeAfter {
			f.Close()
		}
	}
	if req.TTY {
		master, slave, err := pty.Open()
		if err != nil {
			sendError(st, execError(err, "openpty", ""))
			return
		}
		rows, cols := req.Rows, req.Cols
		if rows == 0 || cols == 0 {
			rows, cols = 24, 80
		}
		pty.Setsize(master, &pty.Winsize{Rows: rows, Cols: cols})
		ptmx = master
		closeAfter = append(closeAfter, slave)
		fd := slave.Fd()
		fds = []uintptr{fd, fd, fd}
		sys.Setctty = true
		sys.Ctty = 0
		if req.Stdin {
			stdinW = master
		}
		outputs = append(outputs, master)
		outTypes = append(outTypes, protocol.FrameStdout)
	} else {
		null, err := s.devNull()
		if err != nil {
			sendError(st, execError(err, "open", os.DevNull))
			return
		}
		fds = []uintptr{null, null, null}
		if req.Stdin {
			r, w, err := os.Pipe()
			if err != nil {
				sendError(st, execError(err, "pipe", ""))
				return
			}
			closeAfter = append(closeAfter, r)
			fds[0], stdinW = r.Fd(), w
		}
		for i, attach := range []bool{req.Stdout, req.Stderr} {
			if !attach {
				continue
			}
			r, w, err := os.Pipe()
			if err != nil {
				cleanup()
				sendError(st, execError(err, "pipe", ""))
				return
			}
			// A bigger pipe means fewer, larger frames for bulk output.
			unix.FcntlInt(w.Fd(), unix.F_SETPIPE_SZ, 1<<20)
			closeAfter = append(closeAfter, w)
			fds[i+1] = w.Fd()
			outputs = append(outputs, r)
			outTypes = append(outTypes, []protocol.FrameType{protocol.FrameStdout, protocol.FrameStderr}[i])
		}
	}
	attr := &syscall.ProcAttr{Dir: dir, Env: env, Files: fds, Sys: sys}
	start := time.Now()
	pid, wait, err := s.cfg.Starter.StartProcess(path, req.Args, attr)
	cleanup()
	if err != nil {
		if stdinW != nil && ptmx == nil {
			stdinW.Close()
		}
		for _, f := range outputs {
			f.Close()
		}
		sendError(st, execError(err, "exec", path))
		return
	}
	s.running.Add(1)
	defer s.running.Add(-1) // after the wait below
	s.debugf("exec %q: pid %d", req.Args, pid)
	p := &proc{pid: pid}
	exited := make(chan struct{}) // closed once the process has been waited for

	// Standard input: one writer goroutine drains a bounded queue fed by
	// the exec_stdin stream (or, from older clients, by stdin frames on
	// this stream).
	var sink *stdinSink
	if stdinW != nil {
		sink = newStdinSink(exited)
		go sink.run(stdinW, ptmx != nil)
		key := execKey{sess, st.StreamID()}
		s.registerExec(key, sink)
		defer s.unregisterExec(key)
	}
	if err := sendResponse(st, protocol.ExecStarted{Pid: pid}); err != nil {
		// The client is gone already.
		p.signal(syscall.SIGKILL)
	}

	// Forward output.
	var outWG sync.WaitGroup
	for i, f := range outputs {
		outWG.Add(1)
		go func() {
			defer outWG.Done()
			pumpOutput(f, outTypes[i], fw)
		}()
	}

	// Read the client's frames on this stream: resize, signal, and the end
	// of the stream, which cancels the exec. Nothing here waits for the
	// process: a signal is delivered even while the process does not read
	// its input (only the in-band stdin frames of older clients wait for
	// room in the stdin queue).
	clientGone := make(chan struct{})
	var protoErr error // a protocol violation by the client, reported instead of the exit
	go func() {
		defer close(clientGone)
		for {
			t, b, err := protocol.ReadFrame(st, nil)
			if err != nil {
				if errors.Is(err, protocol.ErrMalformed) || errors.Is(err, protocol.ErrFrameTooLarge) || errors.Is(err, protocol.ErrUnknownFrame) {
					s.logf("exec pid %d: protocol error: %v", pid, err)
					protoErr = err
				} else if !errors.Is(err, io.EOF) && !errors.Is(err, yamux.ErrConnectionReset) && !errors.Is(err, yamux.ErrSessionShutdown) && !errors.Is(err, errViewClosed) {
					s.logf("exec pid %d: %v", pid, err)
				}
				return
			}
			var ferr error
			switch t {
			case protocol.FrameStdin, protocol.FrameStdinEOF:
				ferr = sink.frame(ctx, t, b)
			case protocol.FrameResize:
				rows, cols, _ := protocol.DecodeResize(b)
				if ptmx != nil {
					pty.Setsize(ptmx, &pty.Winsize{Rows: rows, Cols: cols})
				}
			case protocol.FrameSignal:
				p.signal(syscall.Signal(protocol.SignalNumber(string(b))))
			default:
				ferr = fmt.Errorf("%w: unexpected %v frame during exec", protocol.ErrMalformed, t)
			}
			if ferr != nil {
				protoErr = ferr
				s.logf("exec pid %d: %v", pid, protoErr)
				return
			}
		}
	}()

	// Kill the process group on timeout, client disconnect or session end.
	var timeout <-chan time.Time
	if req.TimeoutNS > 0 {
		t := time.NewTimer(time.Duration(req.TimeoutNS))
		defer t.Stop()
		timeout = t.C
	}
	var timedOut bool
	go func() {
		select {
		case <-timeout:
			p.mu.Lock()
			timedOut = !p.done
			p.mu.Unlock()
			p.signal(syscall.SIGKILL)
		case <-clientGone:
			p.signal(syscall.SIGKILL)
		case <-ctx.Done():
			p.signal(syscall.SIGKILL)
		case <-exited:
		}
	}()

	ws, ru, werr := wait()
	dur := time.Since(start)
	p.mu.Lock()
	p.done = true
	to := timedOut
	p.mu.Unlock()
	close(exited)

	// Forward the rest of the output; background processes may hold it
	// open, so give up after a grace period (or when the client or the
	// session goes away).
	grace := s.cfg.OutputGrace
	if req.OutputGraceNS != 0 {
		grace = time.Duration(req.OutputGraceNS)
	}
	var graceC <-chan time.Time
	if grace > 0 {
		t := time.NewTimer(grace)
		defer t.Stop()
		graceC = t.C
	}
	if len(outputs) > 0 {
		outDone := make(chan struct{})
		go func() { outWG.Wait(); close(outDone) }()
		select {
		case <-outDone:
		case <-graceC:
			// Stop waiting for the background writers, but forward what
			// is in the pipes already.
			for _, f := range outputs {
				f.SetReadDeadline(time.Now())
			}
			select {
			case <-outDone:
			case <-clientGone:
			case <-ctx.Done():
			}
		case <-clientGone:
		case <-ctx.Done():
		}
		for _, f := range outputs {
			f.Close()
		}
		<-outDone
	}
	if ptmx != nil {
		ptmx.Close()
	}

	res := protocol.ExitResult{ExitCode: ws.ExitStatus(), DurationNS: int64(dur), MaxRSS: ru.Maxrss * 1024, TimedOut: to}
	if werr != nil {
		res.ExitCode = -1
		s.logf("exec pid %d: wait: %v", pid, werr)
	}
	if ws.Signaled() {
		res.ExitCode = -1
		res.Signal = unix.SignalName(ws.Signal())
		if res.Signal == "" {
			res.Signal = fmt.Sprintf("SIG%d", int(ws.Signal()))
		}
	}
	select {
	case <-clientGone:
		if protoErr != nil {
			// The process was killed because of the violation: say why.
			e := protocol.ErrorFrom(protoErr, "exec", "")
			e.Message += fmt.Sprintf(" (process %d killed)", pid)
			sendError(fw.w, e)
			return
		}
	default:
	}
	b, _ := protocol.Marshal(res)
	fw.write(protocol.FrameExit, b)
}

// devNull returns the server's descriptor of /dev/null (close-on-exec),
// opened once and shared by every exec's detached streams.
func (s *Server) devNull() (uintptr, error) {
	s.nullOnce.Do(func() {
		fd, err := unix.Open(os.DevNull, unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			s.nullErr = &os.PathError{Op: "open", Path: os.DevNull, Err: err}
			return
		}
		s.nullFd = uintptr(fd)
	})
	return s.nullFd, s.nullErr
}

// proc is a started process whose group can be signalled until it exits.
type proc struct {
	pid  int
	mu   sync.Mutex
	done bool
}

// signal sends sig to the process group, and to the process in case it
// moved to another group. After the process has been waited for, its pid
// may be reused, so nothing is sent.
func (p *proc) signal(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		return
	}
	syscall.Kill(-p.pid, sig)
	syscall.Kill(p.pid, sig)
}

// pumpOutput forwards r as frames of type t until r ends or the stream
// fails. Each frame goes out in a single write: data is read right after a
// reserved header.
func pumpOutput(r *os.File, t protocol.FrameType, fw *frameWriter) {
	bp := getBuf()
	defer putBuf(bp)
	buf := *bp
	for {
		n, err := r.Read(buf[protocol.HeaderSize:])
		if n > 0 {
			protocol.PutFrameHeader(buf, t, n)
			if werr := fw.writeRaw(buf[:protocol.HeaderSize+n]); werr != nil {
				// Client gone: stop reading; the process gets EPIPE or is
				// killed.
				r.Close()
				return
			}
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// The output grace is over: forward what is buffered.
			drainOutput(r, t, fw, buf)
			return
		}
		if err != nil {
			// EOF, or EIO from a pty whose slave side is closed.
			return
		}
	}
}

// maxDrain bounds what drainOutput forwards: a pipe holds 1 MiB (the size
// the server sets), more means a writer is still busy.
const maxDrain = 1<<20 + outputChunk

// drainOutput forwards the data buffered in r without waiting for more,
// up to maxDrain bytes. buf is pumpOutput's buffer.
func drainOutput(r *os.File, t protocol.FrameType, fw *frameWriter, buf []byte) {
	r.SetReadDeadline(time.Time{})
	rc, err := r.SyscallConn()
	if err != nil {
		return
	}
	for total := 0; total < maxDrain; {
		var n int
		var rerr error
		// One non-blocking read(2); the raw conn keeps the descriptor
		// open meanwhile even if the file is being closed.
		if err := rc.Read(func(fd uintptr) bool {
			n, rerr = unix.Read(int(fd), buf[protocol.HeaderSize:])
			return true
		}); err != nil || rerr != nil || n <= 0 {
			return // closed, empty (EAGAIN) or at EOF
		}
		protocol.PutFrameHeader(buf, t, n)
		if fw.writeRaw(buf[:protocol.HeaderSize+n]) != nil {
			return
		}
		total += n
	}
}

// mergeEnv returns base with the entries of over added or replacing those
// with the same key.
func mergeEnv(base, over []string) []string {
	out := make([]string, 0, len(base)+len(over))
	idx := make(map[string]int)
	for _, list := range [][]string{base, over} {
		for _, kv := range list {
			k, _, _ := strings.Cut(kv, "=")
			if i, ok := idx[k]; ok {
				out[i] = kv
				continue
			}
			idx[k] = len(out)
			out = append(out, kv)
		}
	}
	return out
}

func envValue(env []string, key string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(env[i], "="); ok && k == key {
			return v
		}
	}
	return ""
}

// errNotFound is the error for a program missing from PATH.
var errNotFound = errors.New("executable file not found in $PATH")

// lookPath finds an executable like exec.LookPath, but with the PATH of
// the exec's environment and relative entries taken from dir.
func lookPath(file, pathEnv, dir string) (string, error) {
	if strings.Contains(file, "/") {
		p := file
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		if err := checkExecutable(p); err != nil {
			return "", &fs.PathError{Op: "exec", Path: file, Err: err}
		}
		return p, nil
	}
	for _, d := range filepath.SplitList(pathEnv) {
		if d == "" {
			d = "."
		}
		if !filepath.IsAbs(d) {
			d = filepath.Join(dir, d)
		}
		p := filepath.Join(d, file)
		if checkExecutable(p) == nil {
			return p, nil
		}
	}
	return "", &fs.PathError{Op: "exec", Path: file, Err: fmt.Errorf("%w: %w", errNotFound, fs.ErrNotExist)}
}

func checkExecutable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		if pe, ok := err.(*fs.PathError); ok {
			return pe.Err
		}
		return err
	}
	if fi.IsDir() {
		return syscall.EISDIR
	}
	if fi.Mode()&0o111 == 0 {
		return fs.ErrPermission
	}
	return nil
}
