// Command vsockexec runs a command through a supermachine agent reached
// over AF_VSOCK. The boot tests put it into the guest's root image to
// prove vsock by use: inside the guest it talks to the agent over vsock
// loopback (CID 1).
//
//	vsockexec CID PORT COMMAND [ARG...]
//
// It prints the command's stdout and stderr and exits with its exit code.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/supermachine-go/supermachine-kernel/agent"
)

func main() {
	if len(os.Args) < 4 {
		fmt.Fprintln(os.Stderr, "usage: vsockexec CID PORT COMMAND [ARG...]")
		os.Exit(2)
	}
	cid, err1 := strconv.ParseUint(os.Args[1], 10, 32)
	port, err2 := strconv.ParseUint(os.Args[2], 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		fmt.Fprintln(os.Stderr, "vsockexec:", err)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := agent.DialVsock(ctx, uint32(cid), uint32(port))
	if err != nil {
		fmt.Fprintln(os.Stderr, "vsockexec: dial:", err)
		os.Exit(1)
	}
	defer c.Close()
	cmd := c.Command(ctx, os.Args[3], os.Args[4:]...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	err = cmd.Run()
	var ee *agent.ExitError
	if errors.As(err, &ee) {
		os.Exit(ee.ExitCode())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "vsockexec:", err)
		os.Exit(1)
	}
}
