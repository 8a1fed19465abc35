//go:build linux

// Command supermachine-agent is the supermachine guest agent. As /init of
// the agent initramfs it first does the init's work (package
// internal/guestinit: root, overlay, mounts, switch root), then serves, as
// PID 1 of the guest's container, exec, file and control RPCs to the host
// over AF_VSOCK and a virtio-serial port. See agent/README.md for its
// configuration and agent/PROTOCOL.md for the protocol.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/supermachine-go/supermachine-kernel/agent/pid1"
	"github.com/supermachine-go/supermachine-kernel/agent/protocol"
	"github.com/supermachine-go/supermachine-kernel/agent/server"
	"github.com/supermachine-go/supermachine-kernel/internal/guestinit"
	"github.com/supermachine-go/supermachine-kernel/internal/initconfig"
	"golang.org/x/sys/unix"
)

func main() {
	isInit := os.Getpid() == 1
	initramfsInit := isInit && guestinit.InInitramfs()
	cmdline := ""
	if initramfsInit {
		cmdline = initStage()
	}
	logger := log.New(os.Stderr, "supermachine-agent: ", 0)
	if isInit {
		// As init, our stderr may be missing or not the console.
		if _, err := unix.FcntlInt(2, unix.F_GETFD, 0); err != nil {
			logger.SetOutput(io.Discard)
		}
		os.Setenv("PATH", server.DefaultPath)
		if err := run(logger, true, initramfsInit, cmdline); err != nil {
			pid1.Fatal(logger.Writer(), err)
		}
		select {} // unreachable: run does not return nil as PID 1
	}
	if err := run(logger, false, false, ""); err != nil {
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		logger.Printf("%v", err)
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

// afterReady is work that can wait until the agent serves; it runs in
// the background then.
var afterReady []func()

// initStage does the init's work as PID 1 of the agent initramfs: it
// mounts the root under an overlay and switches to it (package
// guestinit), sets os.Args to the agent arguments of its settings and
// returns the kernel command line. On failure it reports what failed and ends the guest, with a rescue
// shell first if the settings or the command line ask for one.
func initStage() (cmdline string) {
	powerOff := func() error { return pid1.PowerOff(false) }
	if err := guestinit.MountEarly(); err != nil {
		guestinit.Fail(os.Stderr, err, false, powerOff)
	}
	b, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		guestinit.Fail(os.Stderr, fmt.Errorf("reading the kernel command line: %w", err), false, powerOff)
	}
	cmdline = string(b)
	cfg, err := guestinit.Load(cmdline)
	if err != nil {
		// The rescue parameter counts even when another one is bad.
		v, asked := pid1.ParseCmdline(cmdline)[initconfig.CmdlinePrefix+"rescue"]
		rescue, _ := initconfig.ParseBool(v)
		guestinit.Fail(os.Stderr, err, cfg.Rescue || asked && rescue, powerOff)
	}
	free, err := guestinit.SetUp(context.Background(), cfg)
	if err != nil {
		guestinit.Fail(os.Stderr, err, cfg.Rescue, powerOff)
	}
	afterReady = append(afterReady, free)
	os.Args = append(os.Args[:1], cfg.AgentArgs...)
	return strings.TrimSpace(cmdline)
}

// run serves as the agent. As PID 1 it also mounts what a container
// expects and brings up the loopback interface; after the init stage
// (afterInitStage: /dev, /proc and /sys are mounted) it does that after
// it has started serving, holding requests back until it is done.
// cmdline is the kernel command line if the init stage read it.
func run(logger *log.Logger, isInit, afterInitStage bool, cmdline string) error {
	var reaper *pid1.Reaper
	var prepare []func()
	if isInit {
		// Start reaping before anything else can create orphans.
		reaper = pid1.NewReaper()
		mountAll := func() {
			if err := pid1.MountAll(); err != nil {
				logger.Printf("mounts: %v", err)
			}
		}
		if afterInitStage {
			prepare = append(prepare, mountAll)
		} else {
			mountAll()
		}
		if c, err := os.OpenFile("/dev/console", os.O_WRONLY|unix.O_NOCTTY, 0); err == nil {
			if _, err := unix.FcntlInt(2, unix.F_GETFD, 0); err != nil {
				logger.SetOutput(c)
			}
		}
		// A Go program exits on SIGTERM, SIGINT, SIGHUP by default; init
		// must not.
		sigs := make(chan os.Signal, 8)
		signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT,
			syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGPWR)
		go func() {
			for s := range sigs {
				logger.Printf("ignoring %s (PID 1)", unix.SignalName(s.(syscall.Signal)))
			}
		}()
	}
	if isInit && cmdline == "" {
		b, err := os.ReadFile("/proc/cmdline")
		if err != nil {
			logger.Printf("reading kernel command line: %v", err)
		}
		cmdline = strings.TrimSpace(string(b))
	}
	cfg, warnings, err := parseConfig(os.Args[1:], cmdline, os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errUsage
		}
		if !isInit {
			return err
		}
		// Bad flags must not kill the guest: serve with the defaults.
		logger.Printf("flags: %v (using defaults)", err)
		cfg, warnings, _ = parseConfig(nil, cmdline, io.Discard)
	}
	for _, w := range warnings {
		logger.Printf("%s", w)
	}
	if isInit {
		prepare = append(prepare, func() {
			if err := pid1.LoopbackUp(); err != nil {
				logger.Printf("bringing up lo: %v", err)
			}
		})
	}

	scfg := server.Config{Version: protocol.AgentVersion, Logf: logger.Printf}
	if cfg.debug {
		scfg.Debugf = logger.Printf
	}
	if reaper != nil {
		scfg.Starter = reaper
	}
	prepared := make(chan struct{})
	if len(prepare) > 0 {
		scfg.Prepared = prepared
	}
	srv := server.New(scfg)
	shutdown := make(chan struct{})
	if !isInit {
		// Outside a VM (development, tests), SIGTERM and SIGINT end the
		// agent, killing the commands it runs, instead of orphaning them.
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
		go func() {
			sig := <-sigs
			close(shutdown)
			logger.Printf("%v: shutting down, killing %d running commands", sig, srv.Running())
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := srv.Shutdown(ctx); err != nil {
				logger.Printf("shutdown: %v", err)
				os.Exit(1)
			}
			os.Exit(0)
		}()
	}

	var wg sync.WaitGroup
	errs := make(chan error, 3)
	var served []string
	serve := func(what string, f func() error) {
		served = append(served, what)
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- fmt.Errorf("%s: %w", what, f())
		}()
	}
	if cfg.vsockPort != 0 {
		l, err := server.ListenVsock(uint32(cfg.vsockPort), cfg.allowAnyCID, logger.Printf)
		if err != nil {
			logger.Printf("vsock port %d: %v (not serving vsock)", cfg.vsockPort, err)
		} else {
			serve(fmt.Sprintf("vsock port %d", cfg.vsockPort), func() error { return srv.Serve(l) })
		}
	}
	if cfg.serialPort != "" {
		dev, err := server.FindSerialPort(cfg.serialPort)
		var port io.ReadWriteCloser
		if err == nil {
			port, err = server.OpenSerialPort(dev)
		}
		if err != nil {
			logger.Printf("serial %s: %v (not serving it)", cfg.serialPort, err)
		} else {
			serve(fmt.Sprintf("serial %s", cfg.serialPort), func() error { return srv.ServeStream(context.Background(), port) })
		}
	}
	if cfg.listenUnix != "" {
		os.Remove(cfg.listenUnix)
		// ListenUnix, not Listen: Listen links the DNS resolver in.
		l, err := net.ListenUnix("unix", &net.UnixAddr{Name: cfg.listenUnix, Net: "unix"})
		if err != nil {
			return err
		}
		serve("unix "+cfg.listenUnix, func() error { return srv.Serve(l) })
	}
	if len(served) == 0 {
		return errors.New("no transport to serve: no vsock listener, no serial port, no -listen-unix")
	}
	up := server.Uptime()
	// Boot tests grep for this line.
	fmt.Fprintf(logger.Writer(), "supermachine-agent %s ready (%s) uptime=%.3fs\n", protocol.AgentVersion, strings.Join(served, ", "), up.Seconds())
	go func() {
		for _, f := range prepare {
			f()
		}
		close(prepared)
		if os.Getenv("GOGC") == "" {
			// The agent's live heap is tiny; collecting at 50% growth
			// instead of 100% keeps its RSS after bursts of calls small
			// (guest RAM is the user's), at a negligible CPU cost. The
			// heap before the first request is far below the first
			// collection's 4 MiB, so this can wait.
			debug.SetGCPercent(50)
		}
		for _, f := range afterReady {
			f()
		}
	}()
	// Serve until every transport failed. As PID 1 that is fatal.
	for range served {
		err := <-errs
		logger.Printf("%v", err)
	}
	wg.Wait()
	select {
	case <-shutdown:
		// The transports ended because of the shutdown, which exits the
		// process when it is done (within its 5 s deadline).
		select {}
	default:
	}
	return errors.New("every transport failed")
}
