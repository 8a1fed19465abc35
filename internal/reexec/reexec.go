// Package reexec runs the current test binary again as a helper process,
// for tests that need several processes (concurrent writers) or a process
// to kill. It also works when the tests run under qemu-user without
// binfmt_misc (go test -exec qemu-aarch64-static): the child is then
// started through the same emulator.
package reexec

import (
	"errors"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"syscall"

	archfacts "github.com/supermachine-go/supermachine-kernel/internal/arch"
)

// EnvVar names the environment variable that selects a helper mode in the
// child; tests read it in TestMain.
const EnvVar = "SUPERMACHINE_KERNEL_TEST_HELPER"

var (
	probeOnce sync.Once
	prefix    []string
	probeErr  error
)

// Command returns a command that runs the current executable with args
// and with EnvVar set to mode (plus the parent's environment).
func Command(mode string, args ...string) (*exec.Cmd, error) {
	probeOnce.Do(probe)
	if probeErr != nil {
		return nil, probeErr
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	argv := append(append(append([]string(nil), prefix...), exe), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), EnvVar+"="+mode)
	return cmd, nil
}

// Emulated reports whether children run under a qemu-user emulator.
func Emulated() bool {
	probeOnce.Do(probe)
	return len(prefix) > 0
}

// probe finds out whether the executable runs directly.
func probe() {
	exe, err := os.Executable()
	if err != nil {
		probeErr = err
		return
	}
	cmd := exec.Command(exe, "-test.list=^$")
	cmd.Env = append(os.Environ(), EnvVar+"=")
	err = cmd.Run()
	if err == nil || !errors.Is(err, syscall.ENOEXEC) {
		return
	}
	name := archfacts.All[runtime.GOARCH].QEMUUser
	for _, q := range []string{"qemu-" + name + "-static", "qemu-" + name} {
		if p, err := exec.LookPath(q); err == nil {
			prefix = []string{p}
			return
		}
	}
	probeErr = errors.New("reexec: cannot run the test binary again (exec format error) and no qemu-" + name + "-static in PATH")
}
