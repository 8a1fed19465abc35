package allarch_test

import (
	"testing"

	"github.com/supermachine-go/supermachine-kernel/internal/bootfiles"
	_ "github.com/supermachine-go/supermachine-kernel/microvm/allarch"
)

// TestBothArchesRegistered checks that importing allarch makes both
// arches' assets available, each with its own agent.
func TestBothArchesRegistered(t *testing.T) {
	amd, err := bootfiles.For("amd64")
	if err != nil {
		t.Fatal(err)
	}
	arm, err := bootfiles.For("arm64")
	if err != nil {
		t.Fatal(err)
	}
	if amd.Agent.SHA256 == arm.Agent.SHA256 || amd.Agent.SHA256 == "" || arm.KernelVersion == "" {
		t.Errorf("amd64 agent %q, arm64 agent %q, arm64 kernel %q", amd.Agent.SHA256, arm.Agent.SHA256, arm.KernelVersion)
	}
}
