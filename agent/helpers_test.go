//go:build linux

package agent_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/supermachine-go/supermachine-kernel/agent"
	"github.com/supermachine-go/supermachine-kernel/agent/server"
)

// startServer starts an in-process agent server on a Unix socket in a
// temporary directory and returns the socket path.
func startServer(t testing.TB, cfg server.Config) string {
	t.Helper()
	if cfg.Version == "" {
		cfg.Version = agent.Version
	}
	if cfg.Logf == nil {
		cfg.Logf = t.Logf
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := server.New(cfg)
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(l)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return sock
}

// dial connects a client to sock.
func dial(t testing.TB, sock string) *agent.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := agent.Dial(ctx, "unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// newClient starts a server and connects a client to it.
func newClient(t testing.TB) *agent.Client {
	return dial(t, startServer(t, server.Config{}))
}

// testCtx returns a context that ends with the test, with a generous
// deadline: the machine may be busy.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// waitGone polls until pid is gone, failing the test after a long time.
func waitGone(t testing.TB, pid int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d still alive", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
