package qemu

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/digitalocean/go-qemu/qmp"

	"github.com/supermachine-go/supermachine-kernel/agent"
	"github.com/supermachine-go/supermachine-kernel/agent/protocol"
	"github.com/supermachine-go/supermachine-kernel/internal/lifetime"
	"github.com/supermachine-go/supermachine-kernel/internal/poll"
	"github.com/supermachine-go/supermachine-kernel/internal/tail"
)

// Deadlines bound the phases of a boot. A phase that runs over its
// deadline fails with ErrStalled.
type Deadlines struct {
	// Start runs from starting QEMU to its QMP monitor answering.
	Start time.Duration
	// FirstOutput runs from starting QEMU to the guest's first console
	// byte.
	FirstOutput time.Duration
	// Silence is, after the first console byte, the longest the guest
	// may print nothing before its agent answers.
	Silence time.Duration
}

// DefaultDeadlines are the deadlines for a boot under accel: a healthy
// guest prints and answers within a fraction of a second under KVM and
// within a few seconds under TCG on a busy machine.
func DefaultDeadlines(accel string) Deadlines {
	if accel == TCG {
		return Deadlines{Start: 10 * time.Second, FirstOutput: 30 * time.Second, Silence: 30 * time.Second}
	}
	return Deadlines{Start: 5 * time.Second, FirstOutput: 5 * time.Second, Silence: 5 * time.Second}
}

func (d Deadlines) withDefaults(accel string) Deadlines {
	def := DefaultDeadlines(accel)
	if d.Start <= 0 {
		d.Start = def.Start
	}
	if d.FirstOutput <= 0 {
		d.FirstOutput = def.FirstOutput
	}
	if d.Silence <= 0 {
		d.Silence = def.Silence
	}
	return d
}

// Kinds of boot failure, matched with errors.Is on a *BootError.
var (
	// ErrAccel: the hardware accelerator cannot run the guest here.
	ErrAccel = errors.New("the hardware accelerator cannot run this guest")
	// ErrExited: QEMU exited before the boot finished.
	ErrExited = errors.New("QEMU exited")
	// ErrStopped: QEMU stopped the VM (internal error, guest panic, pause).
	ErrStopped = errors.New("the VM stopped")
	// ErrStalled: a boot phase ran over its deadline.
	ErrStalled = errors.New("the guest stopped making progress")
)

// BootError is a failed boot: the phase, the accelerator, what happened
// and what the guest printed last.
type BootError struct {
	Phase  string // e.g. "waiting for the agent"
	Accel  string // KVM, HVF or TCG
	Kind   error  // ErrExited, ErrStopped or ErrStalled
	Reason string // what was seen, in a few words
	// AccelFault says the failure points at the hardware accelerator (a
	// KVM error from QEMU, an internal-error stop, or a guest that never
	// printed anything); the error then also matches ErrAccel.
	AccelFault bool
	Console    string // the last lines of the guest console
	QEMU       string // QEMU's messages, without register dumps
	Err        error  // the underlying error, if any
	certain    bool   // QEMU named the accelerator as the cause
}

func (e *BootError) Error() string {
	var b strings.Builder
	if e.certain {
		fmt.Fprintf(&b, "%s cannot run this guest here: %s (%s)", accelName(e.Accel), e.Reason, e.Phase)
	} else {
		fmt.Fprintf(&b, "boot under %s: %s: %s", accelName(e.Accel), e.Phase, e.Reason)
	}
	if e.QEMU != "" {
		fmt.Fprintf(&b, "\n--- QEMU said ---\n%s", e.QEMU)
	}
	if e.Console != "" {
		fmt.Fprintf(&b, "\n--- last guest console lines ---\n%s", e.Console)
	} else {
		b.WriteString("\n(the guest printed nothing)")
	}
	return b.String()
}

// Unwrap gives the kind, ErrAccel when the accelerator is at fault, and
// the underlying error.
func (e *BootError) Unwrap() []error {
	errs := []error{e.Kind}
	if e.AccelFault {
		errs = append(errs, ErrAccel)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

// VM is a running guest.
type VM struct {
	cfg      Config
	accel    string
	fellBack string
	dl       Deadlines
	sock     string
	cmd      *exec.Cmd
	done     chan struct{}
	err      error
	console  *consoleWatch
	stderr   *stderrWatch
	mon      *qmp.SocketMonitor
	started  time.Time

	stopOnce   sync.Once
	stopped    chan struct{}
	stopStatus atomic.Value // string: the run state QEMU stopped the VM in

	// agentPortOpened is when the guest last opened the agent's port
	// (Unix nanoseconds; 0: not yet), from QEMU's VSERPORT_CHANGE event.
	agentPortOpened atomic.Int64
}

// agentPortID is the QEMU device id of the agent's virtio-serial port,
// which QEMU's VSERPORT_CHANGE events name.
const agentPortID = "agentport"

// portAnswer is how long a handshake may go unanswered after the guest
// opened the agent's port before the connection is made again, doubling
// at each try. The agent answers in milliseconds once its port is open;
// an unanswered handshake then means the guest missed that the host side
// is connected (its write waits for it), which a new connection tells it
// again.
var portAnswer = poll.Backoff{Initial: 500 * time.Millisecond, Max: 8 * time.Second}

// Start starts QEMU and waits until the guest has printed its first
// console output, which proves that the accelerator runs it; in auto mode
// a hardware accelerator that fails before that is replaced by TCG. The
// guest runs until it powers off or reboots, or ctx ends (then QEMU is
// killed).
func Start(ctx context.Context, c Config) (*VM, error) {
	vm, _, err := boot(ctx, c, false)
	return vm, err
}

// Boot starts QEMU like Start and connects to the agent through
// c.AgentSocket, falling back to TCG in auto mode if the hardware
// accelerator fails at any point before the agent answers.
func Boot(ctx context.Context, c Config) (*VM, *agent.Client, error) {
	if c.AgentSocket == "" {
		return nil, nil, errors.New("qemu: Boot needs an AgentSocket")
	}
	return boot(ctx, c, true)
}

func boot(ctx context.Context, c Config, withAgent bool) (*VM, *agent.Client, error) {
	arch, bin, pkg, err := c.binary()
	if err != nil {
		return nil, nil, err
	}
	if _, err := exec.LookPath(bin); err != nil {
		return nil, nil, fmt.Errorf("%w: %s not found; install the Debian package %s (apt-get install %s)", ErrNoQEMU, bin, pkg, pkg)
	}
	if err := c.check(arch); err != nil {
		return nil, nil, err
	}
	ch, err := c.choose(arch, bin)
	if err != nil {
		return nil, nil, err
	}
	progress := func(format string, a ...any) {
		if c.Progress != nil {
			c.Progress(fmt.Sprintf(format, a...))
		}
	}
	if ch.note != "" {
		progress("%s; using software emulation", ch.note)
	}
	accel := ch.accel
	var fellBack *BootError
	for {
		progress("booting %s under QEMU with %s", arch, accelName(accel))
		vm, err := launch(ctx, c, bin, accel)
		var cl *agent.Client
		if err == nil && withAgent {
			if cl, err = vm.ConnectAgent(ctx); err != nil {
				vm.Kill()
			}
		}
		if err == nil {
			if fellBack != nil {
				vm.fellBack = fellBack.Reason
				if ch.memo != nil {
					if err := ch.memo.remember(bin, fellBack.Reason); err != nil {
						progress("could not remember the accelerator verdict: %v", err)
					}
				}
			}
			return vm, cl, nil
		}
		var be *BootError
		if ch.fallback && accel != TCG && errors.As(err, &be) && be.AccelFault {
			progress("%s cannot run this guest here (%s); using software emulation", accelName(accel), be.Reason)
			fellBack, accel = be, TCG
			continue
		}
		if fellBack != nil {
			err = fmt.Errorf("%w\n(before that, %s failed: %s)", err, accelName(fellBack.Accel), fellBack.Reason)
		}
		return nil, nil, err
	}
}

// launch starts QEMU under accel and waits for the guest's first output.
func launch(ctx context.Context, c Config, bin, accel string) (*VM, error) {
	_, args, err := c.Args(accel)
	if err != nil {
		return nil, err
	}
	tmp, err := lifetime.MkdirTemp("qemu")
	if err != nil {
		return nil, err
	}
	qmpSock := filepath.Join(tmp, "qmp.sock")
	if err := checkSocketPath("the QMP socket (in TMPDIR)", qmpSock); err != nil {
		lifetime.RemoveTemp(tmp)
		return nil, err
	}
	args = append(args, "-qmp", "unix:"+OptValue(qmpSock)+",server=on,wait=off")
	if c.AgentSocket != "" {
		os.Remove(c.AgentSocket)
		if err := os.MkdirAll(filepath.Dir(c.AgentSocket), 0o755); err != nil {
			lifetime.RemoveTemp(tmp)
			return nil, err
		}
	}
	vm := &VM{
		cfg: c, accel: accel, dl: c.Deadlines.withDefaults(accel), sock: c.AgentSocket,
		done: make(chan struct{}), stopped: make(chan struct{}),
		console: newConsoleWatch(c.Console), stderr: newStderrWatch(c.Stderr),
	}
	if c.Trace != nil {
		c.Trace(append([]string{bin}, args...))
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = c.ConsoleInput, vm.console, vm.stderr
	cmd.WaitDelay = time.Second
	vm.cmd = cmd
	vm.started = time.Now()
	vm.console.started = vm.started
	if err := lifetime.Start(cmd); err != nil {
		lifetime.RemoveTemp(tmp)
		return nil, fmt.Errorf("qemu: %w", err)
	}
	go func() {
		vm.err = cmd.Wait()
		lifetime.RemoveTemp(tmp)
		close(vm.done)
	}()
	if err := vm.connectMonitor(ctx, qmpSock); err != nil {
		vm.Kill()
		return nil, err
	}
	if err := vm.wait(ctx, "waiting for the guest's first console output", vm.console.first, func() (time.Time, string) {
		return vm.started.Add(vm.dl.FirstOutput), fmt.Sprintf("no console output within %s", vm.dl.FirstOutput)
	}); err != nil {
		vm.Kill()
		return nil, err
	}
	return vm, nil
}

// connectMonitor waits for QEMU's QMP socket and subscribes to its events.
func (vm *VM) connectMonitor(ctx context.Context, sock string) error {
	connected := make(chan struct{})
	var mon *qmp.SocketMonitor
	var monErr error
	go func() {
		defer close(connected)
		pctx, cancel := vm.untilExit(ctx)
		defer cancel()
		poll.Until(pctx, poll.Fast, "QEMU's QMP socket "+sock, func() (bool, error) {
			if _, err := os.Stat(sock); err != nil {
				return false, nil
			}
			m, err := qmp.NewSocketMonitor("unix", sock, vm.dl.Start)
			if err != nil {
				return false, err
			}
			if monErr = m.Connect(); monErr != nil {
				m.Disconnect()
				return false, poll.Stop(monErr)
			}
			mon = m
			return true, nil
		})
	}()
	err := vm.wait(ctx, "starting QEMU", connected, func() (time.Time, string) {
		return vm.started.Add(vm.dl.Start), fmt.Sprintf("its QMP monitor did not answer within %s", vm.dl.Start)
	})
	if err != nil {
		go func() { // do not leak a monitor connected just now
			<-connected
			if mon != nil {
				mon.Disconnect()
			}
		}()
		return err
	}
	if mon == nil {
		if monErr == nil {
			monErr = errors.New("no connection")
		}
		if vm.exitedSoon() {
			return vm.fail("starting QEMU", ErrExited, vm.exitReason("QEMU exited"), monErr)
		}
		return vm.fail("starting QEMU", ErrExited, "its QMP monitor failed: "+monErr.Error(), monErr)
	}
	vm.mon = mon
	events, err := mon.Events(ctx)
	if err != nil {
		// Without events a stop of the VM would go unseen.
		return vm.fail("starting QEMU", ErrExited, "its QMP monitor gave no event stream: "+err.Error(), err)
	}
	go vm.watchEvents(events)
	return nil
}

// watchEvents marks the VM stopped when QEMU stops it or the guest
// panics; the run state says why (internal-error for a KVM failure).
func (vm *VM) watchEvents(events <-chan qmp.Event) {
	for ev := range events {
		switch ev.Event {
		case "GUEST_PANICKED":
			vm.markStopped("guest-panicked")
		case "VSERPORT_CHANGE":
			// The guest opened or closed a virtio-serial port.
			if id, _ := ev.Data["id"].(string); id == agentPortID {
				if open, _ := ev.Data["open"].(bool); open {
					vm.agentPortOpened.Store(time.Now().UnixNano())
				}
			}
		case "STOP":
			go func() {
				status := "paused"
				if out, err := vm.mon.Run([]byte(`{"execute":"query-status"}` + "\n")); err == nil {
					if m := statusRE.FindSubmatch(out); m != nil {
						status = string(m[1])
					}
				}
				if status != "running" {
					vm.markStopped(status)
				}
			}()
		}
	}
}

var statusRE = regexp.MustCompile(`"status":\s*"([^"]+)"`)

func (vm *VM) markStopped(status string) {
	vm.stopOnce.Do(func() {
		vm.stopStatus.Store(status)
		close(vm.stopped)
	})
}

// runState is the run state QEMU stopped the VM in, or "".
func (vm *VM) runState() string {
	s, _ := vm.stopStatus.Load().(string)
	return s
}

// wait waits for ready while watching QEMU: its exit, a stop of the VM,
// an accelerator error on its stderr, and the phase deadline that limit
// returns (re-read on every tick, so output can move it). It notes long
// waits through Config.Progress.
func (vm *VM) wait(ctx context.Context, phase string, ready <-chan struct{}, limit func() (time.Time, string)) error {
	isReady := func() bool {
		select {
		case <-ready:
			return true
		default:
			return false
		}
	}
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	const noteEvery = 5 * time.Second
	phaseStart := time.Now()
	nextNote := phaseStart.Add(noteEvery)
	accelFail := vm.stderr.accelFail
	if vm.accel == TCG {
		accelFail = nil // such messages mean nothing under TCG; never spin on them
	}
	for {
		select {
		case <-ready:
			return nil
		case <-vm.done:
			if isReady() {
				return nil
			}
			reason := "QEMU exited"
			if vm.err != nil {
				reason += " (" + vm.err.Error() + ")"
			}
			return vm.fail(phase, ErrExited, reason, vm.err)
		case <-vm.stopped:
			return vm.fail(phase, ErrStopped, "QEMU stopped the VM (run state "+vm.runState()+")", nil)
		case <-accelFail:
			return vm.fail(phase, ErrStopped, "QEMU reported an accelerator error", nil)
		case <-ctx.Done():
			return fmt.Errorf("qemu: %s: %w", phase, ctx.Err())
		case now := <-tick.C:
			if dl, what := limit(); now.After(dl) {
				if isReady() {
					return nil
				}
				return vm.fail(phase, ErrStalled, what, nil)
			}
			if now.After(nextNote) && vm.cfg.Progress != nil {
				vm.cfg.Progress(fmt.Sprintf("%s… %ds", phase, int(now.Sub(phaseStart).Seconds())))
				nextNote = nextNote.Add(noteEvery)
			}
		}
	}
}

// fail builds the BootError of a phase, deciding whether the hardware
// accelerator is at fault.
func (vm *VM) fail(phase string, kind error, reason string, err error) *BootError {
	accelMsg := vm.stderr.accelMessage()
	e := &BootError{Phase: phase, Accel: vm.accel, Kind: kind, Reason: reason, Err: err,
		Console: lastLines(vm.Console(), 12), QEMU: vm.stderr.summary()}
	if kind == ErrExited && e.QEMU == "" && !vm.console.seen() {
		arch, _, _, _ := vm.cfg.binary()
		e.Reason += "; " + vm.cfg.likelyCause(arch)
	}
	if vm.accel == TCG {
		return e
	}
	switch {
	case accelMsg != "":
		e.AccelFault, e.certain, e.Reason = true, true, accelMsg
	case vm.runState() == "internal-error":
		e.AccelFault, e.certain = true, true
	case !vm.console.seen():
		// The guest never ran far enough to print: a guest that works
		// under TCG and not here points at the accelerator.
		e.AccelFault = true
	}
	return e
}

// ConnectAgent connects to the agent through the AgentSocket and runs the
// protocol handshake, which completes once the agent in the guest has
// opened its port. It returns as soon as QEMU exits or stops the VM, or
// the guest stays silent past its deadline.
func (vm *VM) ConnectAgent(ctx context.Context) (*agent.Client, error) {
	if vm.sock == "" {
		return nil, errors.New("qemu: the VM has no AgentSocket")
	}
	hctx, hcancel := context.WithCancel(ctx)
	defer hcancel()
	ready := make(chan struct{})
	var cl *agent.Client
	var clErr error
	go func() {
		defer close(ready)
		// A handshake that hangs once the guest has opened the agent's
		// port (see portAnswer), or while the guest is silent (its
		// agent printed its ready line, then nothing), is given up and
		// tried again on a new connection; the agent ends a stale
		// serial session when a new hello arrives. The phase deadline
		// still bounds the whole wait.
		retryAfter := vm.dl.Silence / 4
		answer := portAnswer
		for {
			actx, acancel := context.WithCancel(hctx)
			conn, err := vm.dialAgentSocket(actx)
			if err != nil {
				acancel()
				clErr = err
				return
			}
			stalled := make(chan struct{})
			done := make(chan struct{})
			wait := answer.Next()
			go func() {
				tick := time.NewTicker(100 * time.Millisecond)
				defer tick.Stop()
				start := time.Now()
				for {
					select {
					case <-done:
						return
					case <-tick.C:
						last, ok := vm.console.last()
						silent := ok && time.Since(last) > retryAfter && time.Since(start) > retryAfter
						opened := vm.agentPortOpened.Load()
						unanswered := opened != 0 && time.Since(time.Unix(0, opened)) > wait && time.Since(start) > wait
						if silent || unanswered {
							close(stalled)
							acancel()
							return
						}
					}
				}
			}()
			// The agent socket is a virtio-serial port: ping as often as
			// the agent does on serial streams, so that each side notices
			// the other's loss as soon as the other does.
			cl, clErr = agent.NewClient(actx, conn, agent.WithKeepAlive(protocol.SerialKeepAlive))
			close(done)
			if clErr == nil {
				acancel() // it bounded only the handshake
				return
			}
			conn.Close()
			acancel()
			select {
			case <-stalled:
				if hctx.Err() == nil {
					if vm.cfg.Progress != nil {
						vm.cfg.Progress("the agent did not answer the handshake: connecting to it again")
					}
					continue
				}
			default:
			}
			return
		}
	}()
	err := vm.wait(ctx, "waiting for the agent", ready, vm.agentDeadline)
	if err != nil {
		hcancel()
		// The handshake may still complete: close that client.
		go func() {
			<-ready
			if cl != nil {
				cl.Close()
			}
		}()
		return nil, err
	}
	if clErr != nil {
		// A handshake cut by QEMU's exit (the guest powered off, or
		// crashed): report the exit and what the guest printed.
		if vm.exitedSoon() {
			return nil, vm.fail("waiting for the agent", ErrExited, vm.exitReason("QEMU exited during the agent handshake"), clErr)
		}
		return nil, fmt.Errorf("qemu: agent: %w", clErr)
	}
	return cl, nil
}

// exitedSoon reports whether QEMU exits within a second: a connection to
// it that broke is mostly the first sign of its exit.
func (vm *VM) exitedSoon() bool {
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case <-vm.done:
		return true
	case <-t.C:
		return false
	}
}

// exitReason is what, with its exit status if it failed.
func (vm *VM) exitReason(what string) string {
	if vm.err != nil {
		return what + " (" + vm.err.Error() + ")"
	}
	return what
}

// agentDeadline is when the agent phase stalls: FirstOutput after start
// while the guest is silent, else Silence after its last output.
func (vm *VM) agentDeadline() (time.Time, string) {
	if last, ok := vm.console.last(); ok {
		return last.Add(vm.dl.Silence), fmt.Sprintf("the guest printed nothing for %s and its agent did not answer", vm.dl.Silence)
	}
	return vm.started.Add(vm.dl.FirstOutput), fmt.Sprintf("no console output within %s", vm.dl.FirstOutput)
}

// dialAgentSocket connects to QEMU's agent chardev socket; QEMU binds it
// before it listens, so a refused dial is retried.
func (vm *VM) dialAgentSocket(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	var conn net.Conn
	pctx, cancel := vm.untilExit(ctx)
	defer cancel()
	err := poll.Until(pctx, poll.Fast, "the agent socket "+vm.sock, func() (bool, error) {
		c, err := d.DialContext(ctx, "unix", vm.sock)
		conn = c
		return err == nil, err
	})
	return conn, err
}

// untilExit returns a context that ends with ctx, when QEMU exits, or
// when cancel is called, whichever comes first.
func (vm *VM) untilExit(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	go func() {
		select {
		case <-vm.done:
			cancel(errQEMUExited)
		case <-ctx.Done():
		}
	}()
	return ctx, func() { cancel(context.Canceled) }
}

// errQEMUExited is the cause of a wait cut short by QEMU's exit.
var errQEMUExited = errors.New("QEMU exited")

// Accel is the accelerator the guest runs under: KVM, HVF or TCG.
func (vm *VM) Accel() string { return vm.accel }

// FellBack is why the hardware accelerator was given up for TCG during
// this boot, or "".
func (vm *VM) FellBack() string { return vm.fellBack }

// Started is when QEMU was started.
func (vm *VM) Started() time.Time { return vm.started }

// Console returns the last lines the guest printed (at most
// ConsoleLines); Config.Console receives all of it.
func (vm *VM) Console() string { return vm.console.String() }

// QEMUOutput returns the last lines QEMU printed on its stderr (at most
// StderrLines); Config.Stderr receives all of it.
func (vm *VM) QEMUOutput() string { return vm.stderr.String() }

// How much of the guest console and of QEMU's messages a VM keeps for
// error reports and for Console and QEMUOutput: the last lines only, so
// that a long-lived guest costs bounded memory.
const (
	ConsoleLines = 1000
	StderrLines  = 200
)

// Done is closed when QEMU has exited.
func (vm *VM) Done() <-chan struct{} { return vm.done }

// Wait waits for QEMU to exit, or ctx to end.
func (vm *VM) Wait(ctx context.Context) error {
	select {
	case <-vm.done:
		return vm.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Kill stops QEMU at once and waits for it.
func (vm *VM) Kill() {
	if vm.cmd.Process != nil {
		vm.cmd.Process.Kill()
	}
	<-vm.done
	if vm.mon != nil {
		vm.mon.Disconnect()
	}
}

// consoleWatch keeps the guest console and when it last grew.
type consoleWatch struct {
	*tail.Lines
	started   time.Time
	first     chan struct{}
	firstOnce sync.Once
	lastNano  atomic.Int64
}

func newConsoleWatch(w io.Writer) *consoleWatch {
	return &consoleWatch{Lines: tail.New(ConsoleLines, w), first: make(chan struct{})}
}

func (c *consoleWatch) Write(p []byte) (int, error) {
	c.Lines.Write(p)
	if len(p) > 0 {
		c.lastNano.Store(time.Now().UnixNano())
		c.firstOnce.Do(func() { close(c.first) })
	}
	return len(p), nil
}

func (c *consoleWatch) seen() bool { return c.lastNano.Load() != 0 }

func (c *consoleWatch) last() (time.Time, bool) {
	n := c.lastNano.Load()
	return time.Unix(0, n), n != 0
}

// stderrWatch keeps QEMU's messages and spots accelerator errors in them.
type stderrWatch struct {
	*tail.Lines
	mu        sync.Mutex
	partial   string
	matched   []string
	accelFail chan struct{}
}

// accelErrors are QEMU messages that mean the hardware accelerator cannot
// run the guest (matched case-insensitively).
var accelErrors = []string{
	"kvm internal error", "emulation failure", "failed to set msr", "failed to get msr",
	"kvm run failed", "kvm_run", "failed to initialize kvm", "could not access kvm",
	"kvm_init_vcpu", "error: kvm", "hvf", "hv_error", "hv_unsupported",
}

func newStderrWatch(w io.Writer) *stderrWatch {
	return &stderrWatch{Lines: tail.New(StderrLines, w), accelFail: make(chan struct{})}
}

func (s *stderrWatch) Write(p []byte) (int, error) {
	s.Lines.Write(p)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.partial += string(p)
	for {
		line, rest, ok := strings.Cut(s.partial, "\n")
		if !ok {
			break
		}
		s.partial = rest
		l := strings.ToLower(line)
		for _, pat := range accelErrors {
			if strings.Contains(l, pat) {
				if len(s.matched) == 0 {
					close(s.accelFail)
				}
				if len(s.matched) < 3 {
					s.matched = append(s.matched, strings.TrimSpace(strings.TrimPrefix(line, "qemu-system-x86_64: ")))
				}
				break
			}
		}
	}
	if len(s.partial) > 4096 {
		s.partial = s.partial[len(s.partial)-4096:]
	}
	return len(p), nil
}

// accelMessage is the accelerator errors QEMU printed, joined, or "".
func (s *stderrWatch) accelMessage() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.matched, ", ")
}

// registerDump matches the lines of a CPU state dump (RAX=…, ES =…,
// Code=…), which are left out of error reports.
var registerDump = regexp.MustCompile(`^\s*([A-Z][A-Z0-9]*\s*=|Code=|[A-Z]{2,4}\[)`)

// summary is up to 8 lines of QEMU's messages without register dumps.
func (s *stderrWatch) summary() string {
	var keep []string
	for _, l := range strings.Split(s.String(), "\n") {
		if strings.TrimSpace(l) == "" || registerDump.MatchString(l) {
			continue
		}
		if len(keep) == 8 {
			keep = append(keep, "…")
			break
		}
		keep = append(keep, l)
	}
	return strings.Join(keep, "\n")
}

// lastLines is the last n non-empty lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\r\n"), "\n")
	var keep []string
	for i := len(lines) - 1; i >= 0 && len(keep) < n; i-- {
		if l := strings.TrimRight(lines[i], "\r"); strings.TrimSpace(l) != "" {
			keep = append(keep, l)
		}
	}
	for i, j := 0, len(keep)-1; i < j; i, j = i+1, j-1 {
		keep[i], keep[j] = keep[j], keep[i]
	}
	return strings.Join(keep, "\n")
}

// QuitLeftover asks a QEMU left running in dir, the temporary directory
// of a VM whose owner died without stopping it, to quit through its QMP
// socket. Where the kernel kills children with their parent (Linux) there
// is none; elsewhere a SIGKILL of the owner leaves QEMU running. It gives
// up after a few seconds.
func QuitLeftover(dir string) {
	sock := filepath.Join(dir, "qmp.sock")
	if _, err := os.Stat(sock); err != nil {
		return
	}
	conn, err := net.DialTimeout("unix", sock, time.Second)
	if err != nil {
		return // nobody listens: QEMU is gone
	}
	defer conn.Close()
	// QEMU serves one monitor client at a time; the dead owner's
	// connection is closed, so this one is served, or the deadline ends
	// the attempt.
	conn.SetDeadline(time.Now().Add(3 * time.Second))
	r := bufio.NewReader(conn)
	if _, err := r.ReadString('\n'); err != nil { // the greeting
		return
	}
	if _, err := io.WriteString(conn, `{"execute":"qmp_capabilities"}`+"\n"); err != nil {
		return
	}
	if _, err := r.ReadString('\n'); err != nil {
		return
	}
	io.WriteString(conn, `{"execute":"quit"}`+"\n")
	r.ReadString('\n')
}
