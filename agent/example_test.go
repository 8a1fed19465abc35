//go:build linux

package agent_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/supermachine-go/supermachine-kernel/agent"
	"github.com/supermachine-go/supermachine-kernel/agent/server"
)

// exampleAgent starts an agent server in this process on a Unix socket, in
// place of a guest, and returns the socket path and a cleanup function.
func exampleAgent() (string, func()) {
	dir, err := os.MkdirTemp("", "agent-example")
	if err != nil {
		log.Fatal(err)
	}
	sock := filepath.Join(dir, "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		log.Fatal(err)
	}
	srv := server.New(server.Config{Version: agent.Version})
	go srv.Serve(l)
	return sock, func() { srv.Close(); os.RemoveAll(dir) }
}

func ExampleClient_Command() {
	sock, cleanup := exampleAgent()
	defer cleanup()
	ctx := context.Background()

	c, err := agent.Dial(ctx, "unix", sock)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	out, err := c.Command(ctx, "echo", "hello from the guest").Output()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(string(out))
	// Output: hello from the guest
}

func ExampleExitError() {
	sock, cleanup := exampleAgent()
	defer cleanup()
	ctx := context.Background()
	c, err := agent.Dial(ctx, "unix", sock)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	err = c.Command(ctx, "sh", "-c", "exit 3").Run()
	var ee *agent.ExitError
	if errors.As(err, &ee) {
		fmt.Println("exit code:", ee.ExitCode())
	}

	cmd := c.Command(ctx, "sleep", "60")
	cmd.Timeout = 100 * time.Millisecond
	err = cmd.Run()
	fmt.Println("timed out:", errors.Is(err, agent.ErrTimedOut))
	// Output:
	// exit code: 3
	// timed out: true
}

func ExampleCmd_StdinPipe() {
	sock, cleanup := exampleAgent()
	defer cleanup()
	ctx := context.Background()
	c, err := agent.Dial(ctx, "unix", sock)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	cmd := c.Command(ctx, "tr", "a-z", "A-Z")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	io.WriteString(stdin, "shout\n")
	stdin.Close()
	out, _ := io.ReadAll(stdout)
	if err := cmd.Wait(); err != nil {
		log.Fatal(err)
	}
	fmt.Print(string(out))
	// Output: SHOUT
}

func ExampleClient_WriteFile() {
	sock, cleanup := exampleAgent()
	defer cleanup()
	ctx := context.Background()
	c, err := agent.Dial(ctx, "unix", sock)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	dir, _ := os.MkdirTemp("", "guest")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "etc", "motd")
	err = c.WriteFile(ctx, path, strings.NewReader("welcome\n"), 0o644, &agent.WriteFileOptions{MkdirAll: true})
	if err != nil {
		log.Fatal(err)
	}
	b, err := c.ReadFile(ctx, path)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(string(b))
	// Output: welcome
}

// A guest under Firecracker or Cloud Hypervisor: the VMM's hybrid-vsock
// Unix socket, the agent's default port. DialHybridVsock retries while the
// guest boots, until ctx ends.
func ExampleDialHybridVsock() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := agent.DialHybridVsock(ctx, "/run/vm/vsock.sock", agent.DefaultVsockPort)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	info, err := c.Info(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(info.KernelRelease, info.Uptime)
}

// A guest under QEMU with vhost-vsock-pci,guest-cid=3.
func ExampleDialVsock() {
	ctx := context.Background()
	c, err := agent.DialVsock(ctx, 3, agent.DefaultVsockPort)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if err := c.SetTime(ctx, time.Now()); err != nil { // after a snapshot restore
		log.Fatal(err)
	}
}

// A guest under QEMU without vsock, with the agent's virtio-serial port
// backed by a chardev Unix socket:
//
//	-device virtio-serial-device
//	-chardev socket,id=agent,path=/run/vm/agent.sock,server=on,wait=off
//	-device virtserialport,chardev=agent,name=supermachine.agent
func ExampleNewClient() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := net.Dial("unix", "/run/vm/agent.sock")
	if err != nil {
		log.Fatal(err)
	}
	c, err := agent.NewClient(ctx, conn) // retries its hello until the agent is up
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if err := c.Command(ctx, "poweroff-hooks").Run(); err != nil {
		log.Print(err)
	}
	c.PowerOff(ctx)
}

func ExampleCmd_Signal() {
	sock, cleanup := exampleAgent()
	defer cleanup()
	ctx := context.Background()
	c, err := agent.Dial(ctx, "unix", sock)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// The signal goes out at once, even though sleep never reads the
	// input still queued for it.
	cmd := c.Command(ctx, "sleep", "60")
	cmd.Stdin = strings.NewReader(strings.Repeat("unread input\n", 1<<20))
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	if err := cmd.Signal(agent.Signal("SIGTERM")); err != nil {
		log.Fatal(err)
	}
	err = cmd.Wait()
	fmt.Println(err)
	// Output: signal: SIGTERM
}

func ExampleCmd_OutputGrace() {
	sock, cleanup := exampleAgent()
	defer cleanup()
	ctx := context.Background()
	c, err := agent.Dial(ctx, "unix", sock)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// sh exits at once; its background job writes 1.5 s later, on the
	// same output: after the default grace of 1 s. A negative OutputGrace
	// waits until the job closes the output.
	cmd := c.Command(ctx, "sh", "-c", "(sleep 1.5; echo from the background) &")
	cmd.OutputGrace = -1
	out, err := cmd.Output()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(string(out))
	// Output: from the background
}
