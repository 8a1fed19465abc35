//go:build linux

package main

import (
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/supermachine-go/supermachine-kernel/agent/pid1"
	"github.com/supermachine-go/supermachine-kernel/agent/protocol"
	"github.com/supermachine-go/supermachine-kernel/internal/initconfig"
)

// config is the agent's configuration, from flags and, when the agent is
// PID 1, from the kernel command line (a flag given explicitly wins).
type config struct {
	vsockPort   uint   // -vsock-port, supermachine.vsock_port (0 disables vsock)
	serialPort  string // -serial-port, supermachine.serial_port ("" disables)
	allowAnyCID bool   // -allow-any-cid, supermachine.allow_any_cid
	listenUnix  string // -listen-unix (tests and development only)
	debug       bool   // -debug, supermachine.debug
}

// cmdlinePrefix starts the agent's kernel command line parameters.
const cmdlinePrefix = initconfig.CmdlinePrefix

// parseConfig parses args (without the program name) and, if cmdline is not
// empty, the kernel command line. Flag errors are errors; problems with
// supermachine.* parameters of the kernel command line (an unknown name, a
// bad value) are returned as warnings and the parameter is ignored: a typo
// on the command line must not keep the guest from starting.
func parseConfig(args []string, cmdline string, stderr io.Writer) (c *config, warnings []string, err error) {
	c = &config{}
	fs := flag.NewFlagSet("supermachine-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.UintVar(&c.vsockPort, "vsock-port", protocol.DefaultVsockPort, "AF_VSOCK port to listen on (0 disables vsock); kernel cmdline supermachine.vsock_port=")
	fs.StringVar(&c.serialPort, "serial-port", protocol.DefaultSerialPort, "name of the virtio-serial port to serve (empty disables); kernel cmdline supermachine.serial_port=")
	fs.BoolVar(&c.allowAnyCID, "allow-any-cid", false, "accept vsock connections from any CID, not only the host (2); kernel cmdline supermachine.allow_any_cid=1")
	fs.StringVar(&c.listenUnix, "listen-unix", "", "also listen on this Unix socket path (tests and development)")
	fs.BoolVar(&c.debug, "debug", false, "log every RPC; kernel cmdline supermachine.debug=1")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: supermachine-agent [flags]\n\nThe supermachine guest agent (version %s). As PID 1 it also reads supermachine.* parameters from the kernel command line.\n\n", protocol.AgentVersion)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, nil, err
	}
	if fs.NArg() > 0 {
		return nil, nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if c.vsockPort > 1<<32-1 {
		return nil, nil, fmt.Errorf("-vsock-port %d out of range", c.vsockPort)
	}
	if cmdline == "" {
		return c, nil, nil
	}
	warn := func(format string, args ...any) {
		warnings = append(warnings, "kernel command line: "+fmt.Sprintf(format, args...))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for key, val := range pid1.ParseCmdline(cmdline) {
		name, ok := strings.CutPrefix(key, cmdlinePrefix)
		if !ok {
			continue
		}
		if slices.Contains(initconfig.InitParams, name) {
			continue // the init stage's (package initconfig)
		}
		flagName := strings.ReplaceAll(name, "_", "-")
		switch flagName {
		case "vsock-port", "serial-port", "allow-any-cid", "debug":
		default:
			warn("unknown parameter %s ignored", key)
			continue
		}
		if set[flagName] {
			continue // the flag wins
		}
		switch flagName {
		case "vsock-port":
			n, err := strconv.ParseUint(val, 10, 32)
			if err != nil {
				warn("%s=%q: not a port number, ignored", key, val)
				continue
			}
			c.vsockPort = uint(n)
		case "serial-port":
			c.serialPort = val
		case "allow-any-cid", "debug":
			b, err := initconfig.ParseBool(val)
			if err != nil {
				warn("%s=%q: %v, ignored", key, val, err)
				continue
			}
			if flagName == "debug" {
				c.debug = b
			} else {
				c.allowAnyCID = b
			}
		}
	}
	return c, warnings, nil
}
