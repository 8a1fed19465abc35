package microvm

import (
	"context"

	"github.com/supermachine-go/supermachine-kernel/internal/bootfiles"
	"github.com/supermachine-go/supermachine-kernel/kernel"
)

// The host's arch comes from the kernel facade, which links only that
// arch's blobs; microvm/allarch adds the other one.
func init() {
	bootfiles.Register(bootfiles.Assets{
		Arch:          kernel.Arch,
		KernelVersion: kernel.Kernel.Version(),
		Kernel: func(ctx context.Context, elf bool) (string, string, error) {
			a := kernel.Kernel
			if elf {
				a = kernel.Vmlinux
			}
			p, err := a.Cached(ctx)
			return p, a.SHA256(), err
		},
		Busybox: bootfiles.Blob{SHA256: kernel.Busybox.SHA256(), Bytes: kernel.Busybox.Bytes},
		Agent:   bootfiles.Blob{SHA256: kernel.Agent.SHA256(), Bytes: kernel.Agent.Bytes},
	})
}
