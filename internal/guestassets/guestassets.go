// Package guestassets gives the embedded kernel, busybox and agent of
// either arch, for the code that boots guests of another arch than the
// host's (microvm/allarch, the CLI's vmexec runner, the boot tests).
// Programs that embed only their own arch use the kernel package instead.
//
// The per-arch files (<arch>_generated.go) are made from each arch
// module's manifest by go run ./tools/assets gen, as the facade's are.
package guestassets

import (
	"fmt"

	"github.com/supermachine-go/supermachine-kernel/internal/extract"
)

// Set is the three assets of one arch.
type Set struct {
	Arch                   string
	KernelVersion          string
	KernelFile             string // the kernel's file name: "bzImage" or "Image", as the kernel package names it
	Kernel, Busybox, Agent extract.Source
}

// sets holds each arch's Set, filled by the generated files.
var sets = map[string]Set{}

// For returns the assets of arch: amd64 or arm64.
func For(arch string) (Set, error) {
	s, ok := sets[arch]
	if !ok {
		return Set{}, fmt.Errorf("no bundled assets for GOARCH=%s (amd64, arm64)", arch)
	}
	return s, nil
}
