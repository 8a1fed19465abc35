//go:build linux

package agent_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/supermachine-go/supermachine-kernel/agent"
	"github.com/supermachine-go/supermachine-kernel/agent/server"
)

// BenchmarkExecTrue measures the round trip of running `true` through the
// agent over a Unix socket (open a stream, start the process, wait for its
// exit frame), with the server in the benchmark's process (in-process) and
// as the real agent binary (agent-binary), against its floor, a host os/exec of `true`, in the same run:
// iterations alternate between the two so that both see the same machine
// load. It reports the medians and 99th percentiles of both (agent-p50-ns,
// os-exec-p50-ns, ...) and agent-p50 / os-exec-p50 as p50-ratio.
func BenchmarkExecTrue(b *testing.B) {
	b.Run("in-process", func(b *testing.B) { benchExecTrue(b, newClient(b)) })
	b.Run("agent-binary", func(b *testing.B) { benchExecTrue(b, dial(b, startAgentBinary(b))) })
}

func benchExecTrue(b *testing.B, c *agent.Client) {
	ctx := context.Background()
	truePath, err := exec.LookPath("true")
	if err != nil {
		b.Fatal(err)
	}
	agentLat := make([]time.Duration, 0, b.N)
	hostLat := make([]time.Duration, 0, b.N)
	for b.Loop() {
		t0 := time.Now()
		if err := c.Command(ctx, "true").Run(); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := exec.Command(truePath).Run(); err != nil {
			b.Fatal(err)
		}
		agentLat = append(agentLat, t1.Sub(t0))
		hostLat = append(hostLat, time.Since(t1))
	}
	p := func(lat []time.Duration, q int) float64 {
		slices.Sort(lat)
		return float64(lat[len(lat)*q/100].Nanoseconds())
	}
	a50, h50 := p(agentLat, 50), p(hostLat, 50)
	b.ReportMetric(a50, "agent-p50-ns")
	b.ReportMetric(p(agentLat, 99), "agent-p99-ns")
	b.ReportMetric(h50, "os-exec-p50-ns")
	b.ReportMetric(p(hostLat, 99), "os-exec-p99-ns")
	b.ReportMetric(a50/h50, "p50-ratio")
}

// BenchmarkPing measures a bare request/response round trip.
func BenchmarkPing(b *testing.B) {
	c := newClient(b)
	ctx := context.Background()
	for b.Loop() {
		if err := c.Ping(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

type countWriter struct{ n int64 }

func (w *countWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

// BenchmarkStdoutThroughput streams 256 MiB of a command's stdout
// (head -c 256M /dev/zero) to the client per op ("agent"), and, as its
// floor, the same command's stdout read by a host os/exec ("os-exec"): the
// pipe and memory bandwidth of the machine bound both.
func BenchmarkStdoutThroughput(b *testing.B) {
	const size = 256 << 20
	args := []string{"-c", strconv.Itoa(size), "/dev/zero"}
	b.Run("agent", func(b *testing.B) {
		c := newClient(b)
		ctx := context.Background()
		b.SetBytes(size)
		for b.Loop() {
			var w countWriter
			cmd := c.Command(ctx, "head", args...)
			cmd.Stdout = &w
			if err := cmd.Run(); err != nil {
				b.Fatal(err)
			}
			if w.n != size {
				b.Fatalf("got %d bytes", w.n)
			}
		}
	})
	b.Run("os-exec", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			var w countWriter
			cmd := exec.Command("head", args...)
			cmd.Stdout = &w
			if err := cmd.Run(); err != nil {
				b.Fatal(err)
			}
			if w.n != size {
				b.Fatalf("got %d bytes", w.n)
			}
		}
	})
}

// BenchmarkReadFileThroughput streams a 256 MiB file from the agent.
func BenchmarkReadFileThroughput(b *testing.B) {
	const size = 256 << 20
	path := filepath.Join(b.TempDir(), "f")
	f, _ := os.Create(path)
	f.Truncate(size)
	f.Close()
	c := newClient(b)
	ctx := context.Background()
	b.SetBytes(size)
	for b.Loop() {
		r, err := c.OpenFile(ctx, path)
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, r)
		r.Close()
		if err != nil || n != size {
			b.Fatalf("%d %v", n, err)
		}
	}
}

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// buildAgent builds the agent binary exactly as the asset pipeline does,
// for goarch, into a shared temporary directory.
func buildAgent(b *testing.B, goarch string) string {
	b.Helper()
	buildOnce.Do(func() { buildDir, buildErr = os.MkdirTemp("", "agent-bench") })
	if buildErr != nil {
		b.Fatal(buildErr)
	}
	out := filepath.Join(buildDir, "supermachine-agent-"+goarch)
	if _, err := os.Stat(out); err == nil {
		return out
	}
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w -buildid=", "-o", out, "./cmd/supermachine-agent")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch)
	if msg, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, msg)
	}
	return out
}

// startAgentBinary starts the agent binary built from this tree on a Unix
// socket (no vsock, no serial port, as for development) and returns the
// socket path; the agent is killed when b ends.
func startAgentBinary(b *testing.B) string {
	sock, _ := startAgentBinaryPid(b)
	return sock
}

func startAgentBinaryPid(b *testing.B) (string, int) {
	bin := buildAgent(b, runtime.GOARCH)
	sock := filepath.Join(b.TempDir(), "agent.sock")
	cmd := exec.Command(bin, "-listen-unix", sock, "-vsock-port", "0", "-serial-port", "")
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "ready") {
			break
		}
	}
	go io.Copy(io.Discard, stderr)
	return sock, cmd.Process.Pid
}

// vmRSS returns the VmRSS of pid in MiB.
func vmRSS(b *testing.B, pid int) float64 {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return float64(kb) / 1024
		}
	}
	b.Fatal("no VmRSS")
	return 0
}

// BenchmarkAgentIdleRSS starts the real agent binary with -listen-unix,
// connects a client, waits and reports the agent's VmRSS (idle-RSS-MiB).
// It then runs pings (the timed loop) and 100 execs and reports the RSS
// after another pause (after-load-RSS-MiB).
func BenchmarkAgentIdleRSS(b *testing.B) {
	sock, pid := startAgentBinaryPid(b)
	c := dial(b, sock)
	ctx := context.Background()
	if err := c.Ping(ctx); err != nil {
		b.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	idle := vmRSS(b, pid)
	for b.Loop() {
		if err := c.Ping(ctx); err != nil {
			b.Fatal(err)
		}
	}
	for range 100 {
		if out, err := c.Command(ctx, "echo", "hi").Output(); err != nil {
			b.Fatal(out, err)
		}
	}
	time.Sleep(2 * time.Second)
	b.ReportMetric(idle, "idle-RSS-MiB")
	b.ReportMetric(vmRSS(b, pid), "after-load-RSS-MiB")
}

// BenchmarkBinarySize builds the stripped agent for amd64 and arm64 with
// the pipeline's flags and reports its size and its `xz -9e` size.
func BenchmarkBinarySize(b *testing.B) {
	if _, err := exec.LookPath("xz"); err != nil {
		b.Skip("xz not installed")
	}
	var sizes []float64
	for _, arch := range []string{"amd64", "arm64"} {
		bin := buildAgent(b, arch)
		fi, err := os.Stat(bin)
		if err != nil {
			b.Fatal(err)
		}
		xzOut, err := exec.Command("xz", "-9e", "-c", bin).Output()
		if err != nil {
			b.Fatal(err)
		}
		sizes = append(sizes, float64(fi.Size())/(1<<20), float64(len(xzOut))/(1<<20))
	}
	for b.Loop() {
	}
	for i, arch := range []string{"amd64", "arm64"} {
		b.ReportMetric(sizes[2*i], arch+"-MiB")
		b.ReportMetric(sizes[2*i+1], arch+"-xz-MiB")
	}
}

// timingStarter starts processes like the server's default starter and
// records when the fork began and ended and when the wait returned.
type timingStarter struct {
	mu                 sync.Mutex
	forkStart, forkEnd time.Time
	waitEnd            time.Time
}

func (s *timingStarter) StartProcess(path string, argv []string, attr *syscall.ProcAttr) (int, func() (syscall.WaitStatus, syscall.Rusage, error), error) {
	t0 := time.Now()
	pid, err := syscall.ForkExec(path, argv, attr)
	t1 := time.Now()
	s.mu.Lock()
	s.forkStart, s.forkEnd = t0, t1
	s.mu.Unlock()
	if err != nil {
		return 0, nil, err
	}
	return pid, func() (syscall.WaitStatus, syscall.Rusage, error) {
		var ws syscall.WaitStatus
		var ru syscall.Rusage
		_, err := syscall.Wait4(pid, &ws, 0, &ru)
		for err == syscall.EINTR {
			_, err = syscall.Wait4(pid, &ws, 0, &ru)
		}
		s.mu.Lock()
		s.waitEnd = time.Now()
		s.mu.Unlock()
		return ws, ru, err
	}, nil
}

// BenchmarkExecTrueBreakdown splits the round trip of BenchmarkExecTrue
// (in-process server) into its legs, as medians in microseconds:
// request-us from Start to the server's fork (stream open, request,
// decoding, user and PATH lookup), fork-us the fork and exec, started-us
// from the fork to Start returning (the started answer), run-us from the
// fork to the server's wait returning (the process runs and exits), and
// exit-us from there to Wait returning (the exit frame).
func BenchmarkExecTrueBreakdown(b *testing.B) {
	st := &timingStarter{}
	c := dial(b, startServer(b, server.Config{Starter: st}))
	ctx := context.Background()
	var req, fork, started, run, exit []float64
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 }
	for b.Loop() {
		cmd := c.Command(ctx, "true")
		t0 := time.Now()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := cmd.Wait(); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		st.mu.Lock()
		req = append(req, us(st.forkStart.Sub(t0)))
		fork = append(fork, us(st.forkEnd.Sub(st.forkStart)))
		started = append(started, us(t1.Sub(st.forkEnd)))
		run = append(run, us(st.waitEnd.Sub(st.forkEnd)))
		exit = append(exit, us(t2.Sub(st.waitEnd)))
		st.mu.Unlock()
	}
	med := func(v []float64) float64 { slices.Sort(v); return v[len(v)/2] }
	b.ReportMetric(med(req), "request-us")
	b.ReportMetric(med(fork), "fork-us")
	b.ReportMetric(med(started), "started-us")
	b.ReportMetric(med(run), "run-us")
	b.ReportMetric(med(exit), "exit-us")
}
