package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/supermachine-go/supermachine-kernel/agent"
)

// runCommand runs argv through the agent with this process's stdio and
// returns its exit code (128+n for a signal, as shells do).
func runCommand(ctx context.Context, c *agent.Client, argv []string, tty bool, stdout, stderr io.Writer) (int, error) {
	cmd := c.Command(ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if st, err := os.Stdin.Stat(); err == nil && st.Mode()&os.ModeCharDevice == 0 {
		cmd.Stdin = os.Stdin // piped or redirected input
	}
	cmd.TTY = tty
	err := cmd.Run()
	var ee *agent.ExitError
	if errors.As(err, &ee) {
		if ee.ProcessState.Signal() != "" {
			fmt.Fprintf(stderr, "%s: killed by %s\n", argv[0], ee.ProcessState.Signal())
			return 128 + signalNumber(ee.ProcessState.Signal()), nil
		}
		return ee.ExitCode(), nil
	}
	return 0, err
}

func signalNumber(name string) int {
	switch strings.TrimPrefix(name, "SIG") {
	case "HUP":
		return 1
	case "INT":
		return 2
	case "QUIT":
		return 3
	case "KILL":
		return 9
	case "SEGV":
		return 11
	case "PIPE":
		return 13
	case "TERM":
		return 15
	}
	return 0
}
