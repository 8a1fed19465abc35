// Package allarch links the guest assets of every arch the project
// bundles (amd64 and arm64) into the program and registers them with
// microvm, so that Config.Arch may name an arch other than the host's.
// Import it for its side effect:
//
//	import _ "github.com/supermachine-go/supermachine-kernel/microvm/allarch"
//
// A program that does not import it links only its host arch's blobs.
package allarch

import (
	"context"
	"errors"

	"github.com/supermachine-go/supermachine-kernel/internal/bootfiles"
	"github.com/supermachine-go/supermachine-kernel/internal/extract"
	"github.com/supermachine-go/supermachine-kernel/internal/guestassets"
	"github.com/supermachine-go/supermachine-kernel/kernel"
	_ "github.com/supermachine-go/supermachine-kernel/microvm" // registers the host arch first, which this replaces by the same files
)

func init() {
	for _, arch := range []string{"amd64", "arm64"} {
		if arch == kernel.Arch {
			continue // the facade's registration also knows the ELF vmlinux
		}
		set, err := guestassets.For(arch)
		if err != nil {
			panic(err) // both arches are generated together
		}
		bootfiles.Register(bootfiles.Assets{
			Arch:          arch,
			KernelVersion: set.KernelVersion,
			Kernel: func(ctx context.Context, elf bool) (string, string, error) {
				if elf && arch == "amd64" {
					return "", "", errELF
				}
				dir, err := kernel.DefaultCacheDir()
				if err != nil {
					return "", "", err
				}
				p, err := extract.Cache{Dir: dir}.Path(ctx, set.Kernel, set.KernelFile, 0o644)
				return p, set.Kernel.SHA256, err
			},
			Busybox: bootfiles.Blob{SHA256: set.Busybox.SHA256, Bytes: func() ([]byte, error) { return extract.Decode(set.Busybox) }},
			Agent:   bootfiles.Blob{SHA256: set.Agent.SHA256, Bytes: func() ([]byte, error) { return extract.Decode(set.Agent) }},
		})
	}
}

// errELF: the amd64 ELF vmlinux is derived from the bzImage on amd64
// hosts only.
var errELF = errors.New("the Firecracker shape boots the amd64 ELF vmlinux, which is made on amd64 hosts only")
