// Command supermachine-kernel shows, extracts and boots the bundled guest
// assets: the Linux kernel, busybox and the supermachine agent for the
// arch it was built for.
//
//	supermachine-kernel info [-json]
//	supermachine-kernel extract [DIR]
//	supermachine-kernel initramfs -o FILE [flags]
//	supermachine-kernel boot [flags] -- COMMAND [ARG...]
//	supermachine-kernel boot -image REF [flags] [-- COMMAND [ARG...]]
//	supermachine-kernel images [-rm REF|DIGEST|all]
//	supermachine-kernel exec -connect ADDR [flags] -- COMMAND [ARG...]
//	supermachine-kernel vmexec [flags] [--] BINARY [ARG...]
//
// Install it with go install github.com/supermachine-go/supermachine-kernel/cmd/supermachine-kernel@latest.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/supermachine-go/supermachine-kernel/agent"
	"github.com/supermachine-go/supermachine-kernel/internal/lifetime"
	"github.com/supermachine-go/supermachine-kernel/microvm"
)

const usage = `supermachine-kernel: the bundled microVM guest assets (kernel, busybox, agent)

usage:
  supermachine-kernel info [-json]
        arch, versions, sizes and SHA-256 of the bundled assets (-json:
        kernel.Info as JSON, whose schema is not manifest.json's)
  supermachine-kernel extract [DIR]
        write the kernel, busybox and agent (and on amd64 the ELF vmlinux
        derived from the bzImage) into DIR (default: into the
        content-addressed cache) and print their paths
  supermachine-kernel initramfs -o FILE [flags]
        write the agent initramfs (busybox, agent, generated /init)
  supermachine-kernel boot [flags] -- COMMAND [ARG...]
        boot the bundled kernel under QEMU on a root image, run COMMAND
        through the agent, stream its output and exit with its exit code
  supermachine-kernel boot -image REF [flags] [-- COMMAND [ARG...]]
        the same on a container image (registry reference, OCI layout or
        archive, docker save archive); without COMMAND it runs the image's
        Entrypoint and Cmd with its Env, WorkingDir and User
  supermachine-kernel images [-rm REF|DIGEST|all]
        list or remove the cached root images of container images
  supermachine-kernel exec -connect ADDR [flags] -- COMMAND [ARG...]
        run COMMAND through the agent of a running guest
  supermachine-kernel vmexec [flags] [--] BINARY [ARG...]
        run a Linux executable in a microVM of the bundled kernel for its
        arch, sharing the host's files; for go test -exec

Run "supermachine-kernel COMMAND -h" for the flags of a command.
`

// exitSignals end the CLI: it stops what it started (QEMU, virtiofsd,
// helpers), removes its temporary files, and exits with 128+n as a shell
// reports a command killed by signal n. SIGQUIT also prints the goroutine
// stacks of the moment it arrived, as a Go program does.
var exitSignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT}

// teardownLimit bounds the teardown after a signal; past it the CLI
// kills what is left and exits anyway.
const teardownLimit = 10 * time.Second

func main() {
	// What earlier runs killed with SIGKILL left: their temporary
	// directories and, where no parent-death signal exists, their QEMUs.
	// Best effort: what cannot be removed now is tried again next time.
	microvm.Sweep()
	// The CLI ends (and tears down) when the program that started it
	// dies. Best effort too: without it a SIGKILL of the parent leaves
	// the CLI running until it ends on its own.
	lifetime.DieWithParent(syscall.SIGTERM)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, exitSignals...)
	ctx, cancel := context.WithCancelCause(context.Background())
	done := make(chan int, 1)
	go func() { done <- run(ctx, os.Args[1:], os.Stdout, os.Stderr) }()
	var code int
	select {
	case code = <-done:
	case sig := <-sigs:
		code = tearDown(sig.(syscall.Signal), cancel, done, sigs, os.Stderr)
	}
	lifetime.KillChildren()
	lifetime.RemoveTemps()
	os.Exit(code)
}

// signalError is the cause of a command's cancellation by a signal.
type signalError struct{ sig syscall.Signal }

func (e signalError) Error() string { return "interrupted by " + signalName(e.sig) }

// signalName is the SIGxxx name of sig.
func signalName(sig syscall.Signal) string {
	switch sig {
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGHUP:
		return "SIGHUP"
	case syscall.SIGQUIT:
		return "SIGQUIT"
	}
	return fmt.Sprintf("signal %d", int(sig))
}

// tearDown ends the running command after sig: it cancels its context,
// which stops QEMU and every helper and runs the command's cleanups, and
// waits for it (at most teardownLimit, or until a second signal). It
// returns the exit code 128+n.
func tearDown(sig syscall.Signal, cancel context.CancelCauseFunc, done <-chan int, sigs <-chan os.Signal, stderr io.Writer) int {
	var stacks []byte
	if sig == syscall.SIGQUIT {
		stacks = allStacks()
	}
	timer := time.NewTimer(teardownLimit)
	defer timer.Stop()
	forwarded := make(chan struct{})
	go func() {
		defer close(forwarded)
		forwardSignal(sig)
	}()
	select {
	case <-forwarded:
	case <-timer.C:
	case <-sigs:
	}
	cancel(signalError{sig})
	select {
	case <-done:
	case <-timer.C:
		fmt.Fprintf(stderr, "supermachine-kernel: %s: the teardown did not finish within %s; killing what is left\n", signalName(sig), teardownLimit)
	case again := <-sigs:
		fmt.Fprintf(stderr, "supermachine-kernel: %s during the teardown; killing what is left\n", again)
	}
	if stacks != nil {
		fmt.Fprintf(stderr, "SIGQUIT: quit\n\n%s", stacks)
	}
	return 128 + int(sig)
}

// forwardGrace is how long the program a command runs in the guest gets
// to end after a signal passed on to it, before the teardown: enough for
// a Go test binary to print its goroutine stacks on SIGQUIT.
const forwardGrace = 2 * time.Second

var (
	forwarderMu sync.Mutex
	forwarder   func(syscall.Signal)
)

// setSignalForwarder makes f the way a signal the CLI gets reaches the
// program it runs in the guest, until the returned function is called.
func setSignalForwarder(f func(syscall.Signal)) (clear func()) {
	forwarderMu.Lock()
	forwarder = f
	forwarderMu.Unlock()
	return func() {
		forwarderMu.Lock()
		forwarder = nil
		forwarderMu.Unlock()
	}
}

// forwardSignal passes sig on to the guest program, if there is one, and
// waits (at most forwardGrace) for it to end.
func forwardSignal(sig syscall.Signal) {
	forwarderMu.Lock()
	f := forwarder
	forwarderMu.Unlock()
	if f != nil {
		f(sig)
	}
}

// guestForwarder passes a signal on to cmd, running in the guest, and
// waits for done or forwardGrace.
func guestForwarder(cmd *agent.Cmd, done <-chan struct{}) func(syscall.Signal) {
	return func(sig syscall.Signal) {
		if cmd.Signal(agent.Signal(signalName(sig))) != nil {
			return
		}
		t := time.NewTimer(forwardGrace)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
		}
	}
}

// allStacks is the stacks of every goroutine, as Go prints them on
// SIGQUIT.
func allStacks() []byte {
	buf := make([]byte, 1<<16)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) || len(buf) >= 64<<20 {
			return buf[:n]
		}
		buf = make([]byte, 2*len(buf))
	}
}

// exitError carries the exit code a command should end the process with.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	var err error
	switch args[0] {
	case "info":
		err = cmdInfo(args[1:], stdout, stderr)
	case "extract":
		err = cmdExtract(ctx, args[1:], stdout, stderr)
	case "initramfs":
		err = cmdInitramfs(args[1:], stdout, stderr)
	case "boot":
		err = cmdBoot(ctx, args[1:], stdout, stderr)
	case "exec":
		err = cmdExec(ctx, args[1:], stdout, stderr)
	case "images":
		err = cmdImages(args[1:], stdout, stderr)
	case "vmexec":
		err = cmdVMExec(ctx, args[1:], stdout, stderr)
	default:
		fmt.Fprintf(stderr, "supermachine-kernel: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	var ee exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	}
	if cause := context.Cause(ctx); ctx.Err() != nil && errors.As(cause, new(signalError)) {
		// The signal, not the cancellations it caused inside.
		err = cause
	}
	fmt.Fprintf(stderr, "supermachine-kernel %s: %v\n", args[0], err)
	return 1
}

// errUsage is returned after a usage message was printed.
var errUsage = errors.New("usage")

func newFlags(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: supermachine-kernel %s %s\n\nflags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	return nil
}

// multiFlag collects a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }
