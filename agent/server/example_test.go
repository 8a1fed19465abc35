//go:build linux

package server_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/supermachine-go/supermachine-kernel/agent"
	"github.com/supermachine-go/supermachine-kernel/agent/server"
)

func ExampleServer_Shutdown() {
	dir, err := os.MkdirTemp("", "agent-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		log.Fatal(err)
	}
	srv := server.New(server.Config{Version: agent.Version})
	go srv.Serve(l)

	ctx := context.Background()
	c, err := agent.Dial(ctx, "unix", sock)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	cmd := c.Command(ctx, "sleep", "60")
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	fmt.Println("running:", srv.Running())

	// Shutdown kills the running commands and waits for them.
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("running:", srv.Running())
	// Output:
	// running: 1
	// running: 0
}
