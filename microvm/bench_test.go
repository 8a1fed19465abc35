package microvm

import (
	"context"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkStartFirstExec is the launcher's start-up cost: Start with the
// zero Config (the busybox root, cached boot files) until the agent
// answers, one command answered, then Kill.
func BenchmarkStartFirstExec(b *testing.B) {
	needVMM(b)
	ctx := context.Background()
	for b.Loop() {
		vm, err := Start(ctx, Config{})
		if err != nil {
			b.Fatal(err)
		}
		if err := vm.Command(ctx, "true").Run(); err != nil {
			b.Fatal(err)
		}
		vm.Kill()
	}
}

// countingWriter counts what the guest printed.
type countingWriter struct{ n atomic.Int64 }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.n.Add(int64(len(p)))
	return len(p), nil
}

// heapInUse is the live heap after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// TestConsoleMemoryBounded checks that the launcher's host-side memory
// stays bounded while the guest floods its console: the VM keeps the
// last console lines only.
func TestConsoleMemoryBounded(t *testing.T) {
	needVMM(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	before := heapInUse()
	var console countingWriter
	vm, err := Start(ctx, Config{Console: &console})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Kill()
	booted := heapInUse()
	const lines, width = 20000, 100 // 2 MB through the serial console
	line := strings.Repeat("x", width-1)
	start := console.n.Load()
	if err := vm.Command(ctx, "sh", "-c", "yes "+line+" | head -n 20000 > /dev/console").Run(); err != nil {
		t.Fatal(err)
	}
	printed := console.n.Load() - start
	flooded := heapInUse()
	t.Logf("launcher heap in use: %d KiB before Start, %d KiB with the VM up (+%d KiB), %d KiB after %d KiB of console output (+%d KiB)",
		before>>10, booted>>10, (int64(booted)-int64(before))>>10, flooded>>10, printed>>10, (int64(flooded)-int64(booted))>>10)
	if printed < lines*width*9/10 {
		t.Fatalf("the guest printed %d bytes on its console; want about %d", printed, lines*width)
	}
	// The tail keeps 1000 lines (about 100 KB here); allow the GC's slack.
	if grow := int64(flooded) - int64(booted); grow > 1<<20 {
		t.Errorf("the launcher's heap grew by %d KiB with %d KiB of console output", grow>>10, printed>>10)
	}
	if got := vm.Console(); strings.Count(got, "\n") > 1001 {
		t.Errorf("Console() holds %d lines; want the last 1000", strings.Count(got, "\n"))
	}
}
