package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"

	"github.com/supermachine-go/supermachine-kernel/agent"
	"github.com/supermachine-go/supermachine-kernel/agent/protocol"
)

// runCommand runs argv through the agent with this process's stdio and
// returns its exit code (128+n for a signal, as shells do).
//
// Standard input is attached when it is not a terminal (a pipe or a file)
// and always with tty. With tty and a terminal on standard input, the
// terminal is put in raw mode for the command's lifetime, so that every
// key, ^C included, goes to the guest's pseudo-terminal (whose line
// discipline echoes, edits lines and turns ^C into SIGINT for the guest's
// foreground process group), and window size changes follow (SIGWINCH).
func runCommand(ctx context.Context, c *agent.Client, argv []string, tty bool, stdout, stderr io.Writer) (int, error) {
	return runCommandWith(ctx, c, argv, execSettings{}, tty, stdout, stderr)
}

// runCommandWith is runCommand with an environment, working directory
// and user for argv.
func runCommandWith(ctx context.Context, c *agent.Client, argv []string, s execSettings, tty bool, stdout, stderr io.Writer) (int, error) {
	cmd := c.Command(ctx, argv[0], argv[1:]...)
	cmd.Env, cmd.Dir, cmd.User = s.Env, s.Dir, s.User
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.TTY = tty
	term := isTerminal(os.Stdin)
	if tty || !term {
		cmd.Stdin = os.Stdin
	}
	restore := func() {}
	var winch chan os.Signal
	if tty && term {
		if rows, cols, err := termSize(os.Stdin); err == nil {
			cmd.Rows, cmd.Cols = rows, cols
		}
		r, err := makeRaw(os.Stdin)
		if err != nil {
			return 0, err
		}
		restore = r
		winch = make(chan os.Signal, 1)
		notifyResize(winch)
		defer signal.Stop(winch)
	}
	err := cmd.Start()
	if err == nil {
		// A signal to the CLI reaches the command first, as a signal to
		// a shell's foreground job would.
		done := make(chan struct{})
		defer close(done)
		defer setSignalForwarder(guestForwarder(cmd, done))()
	}
	if err == nil && winch != nil {
		defer relayResizes(winch, func() {
			if rows, cols, err := termSize(os.Stdin); err == nil {
				cmd.Resize(rows, cols)
			}
		})()
	}
	if err == nil {
		err = cmd.Wait()
	}
	restore()
	if ctx.Err() != nil && err != nil {
		// A -timeout, or an interrupt of the CLI: the agent killed it.
		return 0, fmt.Errorf("%s: %w (the command was killed)", argv[0], ctx.Err())
	}
	var ee *agent.ExitError
	if errors.As(err, &ee) {
		if sig := ee.ProcessState.Signal(); sig != "" {
			fmt.Fprintf(stderr, "%s: killed by %s\n", argv[0], sig)
			return 128 + signalNumber(sig), nil
		}
		return ee.ExitCode(), nil
	}
	return 0, err
}

// signalNumber returns the guest's (Linux) number of a signal name as the
// agent reports it: a name of protocol.SignalNames or "SIG<n>".
func signalNumber(name string) int {
	if n := protocol.SignalNumber(name); n != 0 {
		return n
	}
	if n, err := strconv.Atoi(strings.TrimPrefix(name, "SIG")); err == nil && n > 0 && n < 128 {
		return n
	}
	return 0
}

// relayResizes calls resize for each signal on winch until the returned
// stop is called, which returns once the relay has ended (signal.Stop
// does not close winch, so the relay cannot end on its own).
func relayResizes(winch <-chan os.Signal, resize func()) (stop func()) {
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-winch:
				resize()
			case <-quit:
				return
			}
		}
	}()
	return func() { close(quit); <-done }
}
