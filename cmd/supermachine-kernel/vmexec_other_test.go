//go:build !linux

package main

import (
	"strings"
	"testing"
)

// vmexec says plainly that it needs Linux, and runs nothing.
func TestVMExecNeedsLinux(t *testing.T) {
	code, _, stderr := runCLI(t, "vmexec", "--", "/bin/true")
	if code != 1 || !strings.Contains(stderr, "vmexec needs a Linux host") {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
}
