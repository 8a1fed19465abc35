package microvm

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/supermachine-go/supermachine-kernel/internal/lifetime"
)

// TestSweep checks that Sweep removes the temporary directory of a VM
// whose process died (its owner file is no longer locked) and leaves a
// live one alone.
func TestSweep(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	dead := filepath.Join(os.TempDir(), "supermachine-microvm-999999-1")
	if err := os.Mkdir(dead, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dead, ".owner"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	live, err := lifetime.MkdirTemp("microvm")
	if err != nil {
		t.Fatal(err)
	}
	defer lifetime.RemoveTemp(live)
	removed, err := Sweep()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(removed, dead) {
		t.Errorf("Sweep removed %q, not the dead VM's %s", removed, dead)
	}
	if _, err := os.Stat(dead); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s is still there: %v", dead, err)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("Sweep removed the live VM's directory: %v", err)
	}
}
