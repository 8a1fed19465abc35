//go:build linux

package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// goBuild builds pkg into dir and returns the binary's path.
func goBuild(t *testing.T, dir, pkg, name string) string {
	t.Helper()
	out := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, msg)
	}
	return out
}

// startAgentFromSource builds the agent from this tree (not the bundled
// blob, so the test covers the agent's current behaviour), runs it on a
// Unix socket as for development, and returns the socket's path.
func startAgentFromSource(t *testing.T, dir string) string {
	t.Helper()
	bin := goBuild(t, dir, "github.com/supermachine-go/supermachine-kernel/agent/cmd/supermachine-agent", "supermachine-agent")
	sock := filepath.Join(dir, "agent.sock")
	a := exec.Command(bin, "-listen-unix", sock, "-vsock-port", "0", "-serial-port", "")
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Process.Kill(); a.Wait() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			return sock
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent did not create %s within 30s", sock)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// terminal is the host side of the pseudo-terminal the CLI runs on.
type terminal struct {
	t    *testing.T
	ptmx *os.File
	mu   sync.Mutex
	out  bytes.Buffer // everything the CLI wrote
	seen int          // how much of out expect has consumed
}

func (tm *terminal) read() {
	buf := make([]byte, 4096)
	for {
		n, err := tm.ptmx.Read(buf)
		tm.mu.Lock()
		tm.out.Write(buf[:n])
		tm.mu.Unlock()
		if err != nil {
			return
		}
	}
}

func (tm *terminal) typeKeys(s string) {
	tm.t.Helper()
	if _, err := tm.ptmx.WriteString(s); err != nil {
		tm.t.Fatalf("typing %q: %v", s, err)
	}
}

// expect waits until the output after the last match matches re and
// returns the output up to the end of the match.
func (tm *terminal) expect(re string) string {
	tm.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(30 * time.Second)
	for {
		tm.mu.Lock()
		rest := tm.out.String()[tm.seen:]
		loc := rx.FindStringIndex(rest)
		if loc != nil {
			tm.seen += loc[1]
			tm.mu.Unlock()
			return rest[:loc[1]]
		}
		tm.mu.Unlock()
		if time.Now().After(deadline) {
			tm.t.Fatalf("no %q within 30s in the terminal output:\n%q", re, rest)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The CLI's exec -tty under a real pseudo-terminal: what is typed is
// echoed by the guest's terminal (once: the local one is raw), the window
// size follows the local terminal, ^C interrupts the guest's foreground
// process and not the CLI, and the local terminal is restored at the end.
func TestExecTTYInteractive(t *testing.T) {
	dir := t.TempDir()
	sock := startAgentFromSource(t, dir)
	cli := goBuild(t, dir, ".", "supermachine-kernel")

	cmd := exec.Command(cli, "exec", "-connect", "unix:"+sock, "-tty", "--", "sh")
	ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 30, Cols: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	before, err := unix.IoctlGetTermios(int(ptmx.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer cmd.Process.Kill()
	tm := &terminal{t: t, ptmx: ptmx}
	go tm.read()

	// The guest shell's prompt: the CLI has put the terminal in raw mode
	// before it started the command.
	tm.expect(`[#$] $`)
	// A typed line comes back once, echoed by the guest's terminal, then
	// its output.
	tm.typeKeys("echo typed-$((6*7))\r")
	got := tm.expect(`typed-42\r\n`)
	if n := strings.Count(got, "echo typed-$((6*7))"); n != 1 {
		t.Fatalf("the typed line appears %d times, want once (echoed by the guest only):\n%q", n, got)
	}

	// The guest terminal starts at the local size and follows it.
	tm.typeKeys("stty size\r")
	tm.expect(`\b30 100\r\n`)
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 40, Cols: 120}); err != nil {
		t.Fatal(err)
	}
	// SIGWINCH reaches the CLI asynchronously: ask until the size is seen.
	deadline := time.Now().Add(30 * time.Second)
	for {
		tm.typeKeys("stty size\r")
		out := tm.expect(`\b\d+ \d+\r\n`)
		if strings.HasSuffix(out, "40 120\r\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stty size does not follow the resize: %q", out)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// ^C goes to the guest's foreground process, not to the CLI.
	tm.typeKeys(`sh -c 'trap "echo got-SIGINT; exit 0" INT; echo armed; while :; do sleep 0.1; done'` + "\r")
	// Typed-ahead input is echoed before the prompt, so the output may be
	// "…\r\n# armed": match the word, not the line start.
	tm.expect(`\barmed\r\n`)
	tm.typeKeys("\x03")
	tm.expect(`got-SIGINT`)
	select {
	case err := <-exited:
		t.Fatalf("the CLI exited after ^C: %v", err)
	default:
	}
	tm.typeKeys("echo still-$((1+1))\r")
	tm.expect(`still-2\r\n`)

	// The shell's exit status is the CLI's, and the terminal is restored.
	tm.typeKeys("exit 3\r")
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 3 {
			t.Fatalf("CLI exit: %v, want status 3", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the CLI did not exit within 30s after the shell's exit")
	}
	after, err := unix.IoctlGetTermios(int(ptmx.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	if after.Lflag != before.Lflag || after.Iflag != before.Iflag || after.Oflag != before.Oflag {
		t.Fatalf("terminal not restored: lflag %#x iflag %#x oflag %#x, before %#x %#x %#x",
			after.Lflag, after.Iflag, after.Oflag, before.Lflag, before.Iflag, before.Oflag)
	}
}

// exec -timeout kills the command and says why.
func TestExecTimeout(t *testing.T) {
	dir := t.TempDir()
	sock := startAgentFromSource(t, dir)
	start := time.Now()
	code, _, errs := runCLI(t, "exec", "-connect", "unix:"+sock, "-timeout", "500ms", "--", "sleep", "60")
	if code != 1 || !strings.Contains(errs, "deadline exceeded") || !strings.Contains(errs, "killed") {
		t.Fatalf("exec -timeout: code %d, stderr %q", code, errs)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("exec -timeout 500ms returned after %v", d)
	}
}
