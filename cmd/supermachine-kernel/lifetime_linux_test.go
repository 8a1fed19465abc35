package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/supermachine-go/supermachine-kernel/internal/poll"
	"github.com/supermachine-go/supermachine-kernel/internal/qemu"
	"github.com/supermachine-go/supermachine-kernel/kernel"
)

// Whatever ends the CLI during a real boot and a real vmexec run, nothing
// it started stays alive and nothing it made is left: no process, no
// temporary directory or socket, no mount. Catchable signals tear down
// and exit 128+n (SIGQUIT also prints the goroutine stacks); SIGKILL and
// the death of the CLI's parent leave the children to the parent-death
// signal, and SIGKILL's temporary directories to the next run of any
// command.
//
// The CLI's children are found by a marker in their environment, which
// they inherit from the CLI, and by the test's temporary directory
// (TMPDIR of the CLI) in their command line.
func TestSignalMatrix(t *testing.T) {
	if testing.Short() {
		t.Skip("boots guests")
	}
	bin, pkg, _ := qemu.Binary(kernel.Arch)
	if _, err := exec.LookPath(bin); err != nil {
		t.Fatalf("%s not installed: apt-get install %s", bin, pkg)
	}
	cli := goBuild(t, t.TempDir(), ".", "supermachine-kernel")
	// The guest program says when it runs and when a signal reaches it.
	const script = `trap 'echo caught; exit 3' INT TERM HUP QUIT; echo started; while :; do sleep 0.2; done`
	commands := map[string][]string{
		"boot": {"boot", "--", "sh", "-c", script},
	}
	if os.Geteuid() == 0 {
		commands["vmexec"] = []string{"vmexec", "--", "/bin/sh", "-c", script}
	} else {
		t.Log("not root: vmexec is not tried (virtiofsd needs root)")
	}
	ends := []string{"SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGKILL", "parent-death"}
	for _, name := range []string{"boot", "vmexec"} {
		args, ok := commands[name]
		if !ok {
			continue
		}
		for _, end := range ends {
			t.Run(name+"/"+end, func(t *testing.T) { signalCase(t, cli, args, end) })
		}
	}
}

var signalsByName = map[string]syscall.Signal{
	"SIGINT": syscall.SIGINT, "SIGTERM": syscall.SIGTERM, "SIGHUP": syscall.SIGHUP,
	"SIGQUIT": syscall.SIGQUIT, "SIGKILL": syscall.SIGKILL,
}

func signalCase(t *testing.T, cli string, args []string, end string) {
	// Short: the sockets the CLI makes in TMPDIR must fit a socket path.
	tmp, err := os.MkdirTemp("", "sig")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	marker := "SUPERMACHINE_SIGNAL_TEST=" + filepath.Base(tmp) + strconv.FormatInt(time.Now().UnixNano(), 36)
	env := append(os.Environ(), "TMPDIR="+tmp, marker)
	var cmd *exec.Cmd
	if end == "parent-death" {
		// A shell starts the CLI and is killed; the CLI learns of it
		// through its parent-death signal (SIGTERM).
		cmd = exec.Command("/bin/sh", append([]string{"-c", `"$@" & wait`, "sh", cli}, args...)...)
	} else {
		cmd = exec.Command(cli, args...)
	}
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	rest := make(chan string, 1)
	go func() {
		started := make(chan bool, 1)
		go func() {
			r := bufio.NewReader(out)
			line, _ := r.ReadString('\n')
			started <- line == "started\n"
			b, _ := io.ReadAll(r)
			rest <- string(b)
		}()
		select {
		case ok := <-started:
			if !ok {
				waited <- errors.New("the guest command did not start")
				return
			}
			waited <- nil
		case <-time.After(3 * time.Minute):
			waited <- errors.New("the guest command did not start within 3 minutes")
		}
	}()
	if err := <-waited; err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	if n := len(markedProcesses(marker, tmp)); n < 2 {
		t.Errorf("only %d marked processes while the guest runs; the marker does not work", n)
	}
	if end == "parent-death" {
		cmd.Process.Kill()
	} else {
		cmd.Process.Signal(signalsByName[end])
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var werr error
	select {
	case werr = <-exited:
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		t.Fatalf("the CLI did not end within a minute of %s\n%s", end, stderr.String())
	}
	switch sig := signalsByName[end]; {
	case end == "SIGKILL" || end == "parent-death":
	default:
		var ee *exec.ExitError
		if !errors.As(werr, &ee) || ee.ExitCode() != 128+int(sig) {
			t.Errorf("after %s the CLI ended with %v, want exit status %d\n%s", end, werr, 128+int(sig), stderr.String())
		}
	}
	if _, catchable := signalsByName[end]; catchable && end != "SIGKILL" {
		// The guest program got the signal before the teardown (busybox
		// sh may run its trap twice for SIGINT).
		if got := <-rest; !strings.HasPrefix(got, "caught\n") {
			t.Errorf("after %s the guest program printed %q, want %q", end, got, "caught\n")
		}
	}
	if end == "SIGQUIT" && (!strings.Contains(stderr.String(), "SIGQUIT: quit") || !strings.Contains(stderr.String(), "goroutine ")) {
		t.Errorf("SIGQUIT printed no goroutine stacks:\n%s", stderr.String())
	}
	// Children killed by the parent-death signal, and the CLI itself
	// after its parent's death, end within moments.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var left []string
	err = poll.Until(ctx, poll.Peer, "the CLI's processes to end", func() (bool, error) {
		left = markedProcesses(marker, tmp)
		return len(left) == 0, nil
	})
	if err != nil {
		t.Fatalf("after %s: %v; alive:\n%s\nCLI stderr:\n%s", end, err, strings.Join(left, "\n"), stderr.String())
	}
	if end == "SIGKILL" {
		// Nothing of the CLI's ran: its directories are left for the
		// next run of any command to remove.
		if ents, _ := os.ReadDir(tmp); len(ents) == 0 {
			t.Error("SIGKILL left no temporary directory: the sweep below proves nothing")
		}
		sweep := exec.Command(cli, "info")
		sweep.Env = env
		if out, err := sweep.CombinedOutput(); err != nil {
			t.Fatalf("info: %v\n%s", err, out)
		}
	}
	if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("after %s, left in TMPDIR: %s", end, strings.Join(names, " "))
	}
	if b, _ := os.ReadFile("/proc/self/mountinfo"); bytes.Contains(b, []byte(tmp)) {
		t.Errorf("after %s, a mount under %s is left:\n%s", end, tmp, b)
	}
}

// markedProcesses lists the live processes (not zombies) whose
// environment holds marker or whose command line names dir.
func markedProcesses(marker, dir string) []string {
	ents, _ := os.ReadDir("/proc")
	var found []string
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		argv, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if !bytes.Contains(env, []byte(marker)) && !bytes.Contains(argv, []byte(dir)) {
			continue
		}
		stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if i := bytes.LastIndexByte(stat, ')'); i < 0 || i+2 >= len(stat) || stat[i+2] == 'Z' {
			continue
		}
		found = append(found, fmt.Sprintf("%d %s", pid, bytes.ReplaceAll(argv, []byte{0}, []byte{' '})))
	}
	return found
}
