package qemu

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/supermachine-go/supermachine-kernel/internal/reexec"
)

// The fake QEMU is this test binary started with reexec.EnvVar set to
// "fake-qemu:<behaviour>"; it reads the QEMU arguments it needs (-accel,
// -qmp, the agent -chardev) and behaves as a QEMU whose accelerator or
// guest misbehaves in one way:
//
//	internal-error  hardware accel: prints KVM's internal-error report and
//	                a register dump, stops the VM (QMP STOP, run state
//	                internal-error) and stays paused; TCG: boots
//	internal-error-qmp  the same, but says nothing on stderr
//	msr-exit        hardware accel: prints "failed to set MSR" and exits;
//	                TCG: boots
//	exit            exits at once with an error, under any accelerator
//	silent          starts, answers QMP, prints nothing, forever
//	boots           prints a console line and serves the agent protocol on
//	                the agent socket, like a guest whose agent is ready
//	stuck-once      boots, but never answers the first connection
//	stuck-once-port the same, and says on QMP that the guest opened the
//	                agent's port (VSERPORT_CHANGE) once the first
//	                connection is in
//	chatty          boots after printing 5×ConsoleLines lines on the
//	                console and on stderr
const fakePrefix = "fake-qemu:"

func TestMain(m *testing.M) {
	if mode, ok := strings.CutPrefix(os.Getenv(reexec.EnvVar), fakePrefix); ok {
		os.Exit(fakeQEMU(mode, os.Args[1:]))
	}
	os.Exit(m.Run())
}

func fakeQEMU(mode string, args []string) int {
	if len(args) == 1 && args[0] == "--version" {
		fmt.Println("QEMU emulator version 7.2.0 (fake)")
		return 0
	}
	var accel, qmpPath, agentPath string
	for i := 0; i+1 < len(args); i++ {
		switch args[i] {
		case "-accel":
			accel = args[i+1]
		case "-qmp":
			qmpPath = strings.TrimPrefix(strings.Split(args[i+1], ",")[0], "unix:")
		case "-chardev":
			for _, kv := range strings.Split(args[i+1], ",") {
				if p, ok := strings.CutPrefix(kv, "path="); ok {
					agentPath = p
				}
			}
		}
	}
	hw := !strings.HasPrefix(accel, TCG)
	switch {
	case mode == "exit":
		fmt.Fprintln(os.Stderr, "qemu-system-x86_64: -drive id=disk0,file=/nonexistent: Could not open '/nonexistent': No such file or directory")
		return 1
	case mode == "msr-exit" && hw:
		fmt.Fprintln(os.Stderr, "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69")
		return 134
	}
	var status atomic.Value
	status.Store("running")
	stop := make(chan struct{})
	go serveFakeQMP(qmpPath, &status, stop)
	switch {
	case strings.HasPrefix(mode, "internal-error") && hw:
		time.Sleep(50 * time.Millisecond)
		if mode == "internal-error" {
			fmt.Fprint(os.Stderr, "KVM internal error. Suberror: 1\nextra data[0]: 0x0000000000000000\nemulation failure\n"+
				"RAX=0000000000000000 RBX=0000000000000000 RCX=0000000000000000 RDX=0000000000000000\n"+
				"ES =0000 0000000000000000 0000ffff 00009300\nCode=00 00 00 <0f> c7 0e 00 00\n")
		}
		status.Store("internal-error")
		close(stop)
		select {}
	case mode == "silent":
		select {}
	}
	fmt.Println("Linux version 6.12.117 (fake)")
	if mode == "chatty" {
		// More console lines than a VM keeps, and as many on stderr.
		for i := range 5 * ConsoleLines {
			fmt.Printf("console line %d\n", i)
			fmt.Fprintf(os.Stderr, "qemu line %d\n", i)
		}
	}
	if agentPath != "" {
		l, err := net.Listen("unix", agentPath)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Println("supermachine-agent fake ready (serial supermachine.agent) uptime=0.100s")
		if strings.HasPrefix(mode, "stuck-once") {
			// The first connection is accepted and never answered.
			held, err := l.Accept()
			if err != nil {
				return 1
			}
			defer held.Close()
			if mode == "stuck-once-port" {
				close(fakePortOpened)
			}
		}
		serveFakeAgent(l)
	}
	select {}
}

// fakePortOpened, closed, makes the fake QEMU send the event of the guest
// opening the agent's port.
var fakePortOpened = make(chan struct{})

// serveFakeQMP answers QMP on path: the greeting, qmp_capabilities and
// query-status, and a STOP event when stop closes.
func serveFakeQMP(path string, status *atomic.Value, stop <-chan struct{}) {
	l, err := net.Listen("unix", path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for first := true; ; first = false {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		if first {
			go serveFakeQMPConn(conn, status, stop)
		} else {
			go serveFakeQMPConn(conn, status, nil)
		}
	}
}

// serveFakeQMPConn serves one QMP client; stop, if not nil, sends it a
// STOP event when closed.
func serveFakeQMPConn(conn net.Conn, status *atomic.Value, stop <-chan struct{}) {
	var mu sync.Mutex
	enc := json.NewEncoder(conn)
	send := func(v any) {
		mu.Lock()
		defer mu.Unlock()
		enc.Encode(v)
	}
	send(map[string]any{"QMP": map[string]any{"version": map[string]any{"qemu": map[string]int{"major": 7}}, "capabilities": []string{}}})
	if stop != nil {
		go func() {
			<-stop
			send(map[string]any{"event": "STOP", "timestamp": map[string]int{"seconds": 0}})
		}()
		go func() {
			<-fakePortOpened
			send(map[string]any{"event": "VSERPORT_CHANGE", "data": map[string]any{"id": agentPortID, "open": true}, "timestamp": map[string]int{"seconds": 0}})
		}()
	}
	dec := json.NewDecoder(conn)
	for {
		var cmd struct{ Execute string }
		if dec.Decode(&cmd) != nil {
			return
		}
		switch cmd.Execute {
		case "quit":
			send(map[string]any{"return": map[string]any{}})
			os.Exit(0)
		case "query-status":
			st := status.Load().(string)
			send(map[string]any{"return": map[string]any{"status": st, "running": st == "running"}})
		default:
			send(map[string]any{"return": map[string]any{}})
		}
	}
}

// fakeBinary writes a script that starts the fake QEMU with behaviour
// mode, and returns its path.
func fakeBinary(t *testing.T, mode string) string {
	t.Helper()
	cmd, err := reexec.Command(fakePrefix + mode)
	if err != nil {
		t.Fatal(err)
	}
	var q []string
	for _, a := range cmd.Args {
		q = append(q, "'"+strings.ReplaceAll(a, "'", `'\''`)+"'")
	}
	script := fmt.Sprintf("#!/bin/sh\n%s='%s%s' exec %s \"$@\"\n", reexec.EnvVar, fakePrefix, mode, strings.Join(q, " "))
	path := filepath.Join(t.TempDir(), "qemu-fake")
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath(path); err != nil {
		t.Fatal(err)
	}
	return path
}
