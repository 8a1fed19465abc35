package extract

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"testing"
	"time"

	"github.com/supermachine-go/supermachine-kernel/internal/reexec"
	kernelamd64 "github.com/supermachine-go/supermachine-kernel/kernel-amd64"
	kernelarm64 "github.com/supermachine-go/supermachine-kernel/kernel-arm64"
)

// argVar carries the helper's argument (a path) to a child process.
const argVar = "SUPERMACHINE_KERNEL_TEST_ARG"

// TestMain runs a helper mode instead of the tests when the parent test
// started this binary as a helper process (see internal/reexec).
func TestMain(m *testing.M) {
	if mode := os.Getenv(reexec.EnvVar); mode != "" {
		os.Exit(helper(mode, os.Getenv(argVar)))
	}
	os.Exit(m.Run())
}

// helper is a child process's whole life.
func helper(mode, arg string) int {
	ctx := context.Background()
	var err error
	switch mode {
	case "cache":
		var p string
		p, err = Cache{Dir: arg}.Path(ctx, busybox(), "busybox", testMode)
		if err == nil {
			fmt.Println(p)
		}
	case "kill-write", "kill-cache":
		// Announce the temporary file after the first chunk, then
		// stall until the parent kills this process.
		testHookChunk = func(tmp string, _ int64) {
			fmt.Println("TMP", tmp)
			time.Sleep(time.Hour)
		}
		if mode == "kill-write" {
			err = WriteFile(ctx, arg, busybox(), testMode, false)
		} else {
			_, err = Cache{Dir: arg}.Path(ctx, busybox(), "busybox", testMode)
		}
	default:
		err = fmt.Errorf("unknown helper mode %q", mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// testMode is the permission bits tests write files with.
const testMode fs.FileMode = 0o755

// busybox is the real amd64 busybox blob: small enough for many tests.
func busybox() Source {
	return Source{
		Name: "busybox",
		XZ:   kernelamd64.BusyboxXZ(), Size: kernelamd64.BusyboxSize, SHA256: kernelamd64.BusyboxSHA256,
	}
}

// busyboxArm64 is the arm64 busybox blob: a second, different asset.
func busyboxArm64() Source {
	return Source{
		Name: "busybox",
		XZ:   kernelarm64.BusyboxXZ(), Size: kernelarm64.BusyboxSize, SHA256: kernelarm64.BusyboxSHA256,
	}
}

// corrupt returns src with the byte at off of its xz stream flipped.
func corrupt(src Source, off int) Source {
	b := []byte(src.XZ)
	b[off] ^= 0x55
	src.XZ = string(b)
	return src
}
