package microvm

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestHelperRunsFromInit checks that this package's init runs the helper
// in a process started with HelperEnv, before the program's main (here:
// the test binary's, which would run the tests), and that a helper that
// cannot work says why and exits 1.
func TestHelperRunsFromInit(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestHelperRunsFromInit$")
	cmd.Env = append(os.Environ(), HelperEnv+"="+helperReadOnlyView)
	out, err := cmd.CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "microvm helper: ") {
		t.Fatalf("helper with a test binary's arguments: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "PASS") || strings.Contains(string(out), "RUN") {
		t.Errorf("the test binary's main ran in the helper:\n%s", out)
	}
}

// A comma or backslash in a path stays in virtiofsd's source option.
func TestFuseOptValue(t *testing.T) {
	for in, want := range map[string]string{
		"/plain":   "/plain",
		"/a,b":     `/a\,b`,
		`/back\sl`: `/back\\sl`,
		`/x\,y`:    `/x\\\,y`,
	} {
		if got := fuseOptValue(in); got != want {
			t.Errorf("fuseOptValue(%q) = %q, want %q", in, got, want)
		}
	}
}
