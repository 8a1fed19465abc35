package microvm_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/supermachine-go/supermachine-kernel/microvm"
)

// Boot the bundled kernel with its busybox root, run a command and read
// its output.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	vm, err := microvm.Start(ctx, microvm.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer vm.Kill() // the root is read-only: nothing to sync
	out, err := vm.Command(ctx, "uname", "-s").Output()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(string(out))
	// Output: Linux
}

// Share a host directory with the guest, writable, and read back what
// the guest wrote there.
func Example_share() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "share")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	vm, err := microvm.Start(ctx, microvm.Config{
		Shares: []microvm.Share{{HostDir: dir, GuestPath: "/work", Writable: true}},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer vm.Close() // power off: the guest's writes are flushed first
	if err := vm.Command(ctx, "sh", "-c", "echo hello > /work/greeting").Run(); err != nil {
		log.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "greeting"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(string(b))
	// Output: hello
}

// Tell a boot failure's kind and read what the guest printed last.
func ExampleBootError() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := microvm.Start(ctx, microvm.Config{Accel: microvm.AccelOff, Append: []string{"rdinit=/missing", "panic=-1"}})
	var be *microvm.BootError
	if errors.As(err, &be) {
		fmt.Println("phase:", be.Phase)
		fmt.Println("exited:", errors.Is(err, microvm.ErrExited))
		fmt.Println("panicked:", strings.Contains(be.Console, "Kernel panic"))
	}
	// Output:
	// phase: waiting for the agent
	// exited: true
	// panicked: true
}

// A bad Config field is refused before anything starts, by name.
func ExampleStart_badConfig() {
	_, err := microvm.Start(context.Background(), microvm.Config{MemoryMiB: 16})
	fmt.Println(errors.Is(err, microvm.ErrBadConfig), strings.Contains(err.Error(), "MemoryMiB"))
	// Output: true true
}
