// Package guestassets gives the embedded kernel, busybox and agent of
// either arch, for the tools that boot guests of another arch than the
// host's (the CLI's vmexec runner, the boot tests). Programs that embed
// only their own arch use the kernel package instead.
package guestassets

import (
	"fmt"

	archfacts "github.com/supermachine-go/supermachine-kernel/internal/arch"
	"github.com/supermachine-go/supermachine-kernel/internal/extract"
	kernelamd64 "github.com/supermachine-go/supermachine-kernel/kernel-amd64"
	kernelarm64 "github.com/supermachine-go/supermachine-kernel/kernel-arm64"
)

// Set is the three assets of one arch.
type Set struct {
	Arch                   string
	KernelVersion          string
	KernelFile             string // the kernel's file name: "bzImage" or "Image", as the kernel package names it
	Kernel, Busybox, Agent extract.Source
}

// For returns the assets of arch: amd64 or arm64.
func For(arch string) (Set, error) {
	switch arch {
	case "amd64":
		return Set{Arch: arch, KernelVersion: kernelamd64.KernelVersion, KernelFile: archfacts.All["amd64"].KernelFile,
			Kernel:  extract.Source{Name: "kernel", XZ: kernelamd64.KernelXZ(), Size: kernelamd64.KernelSize, SHA256: kernelamd64.KernelSHA256},
			Busybox: extract.Source{Name: "busybox", XZ: kernelamd64.BusyboxXZ(), Size: kernelamd64.BusyboxSize, SHA256: kernelamd64.BusyboxSHA256},
			Agent:   extract.Source{Name: "agent", XZ: kernelamd64.AgentXZ(), Size: kernelamd64.AgentSize, SHA256: kernelamd64.AgentSHA256},
		}, nil
	case "arm64":
		return Set{Arch: arch, KernelVersion: kernelarm64.KernelVersion, KernelFile: archfacts.All["arm64"].KernelFile,
			Kernel:  extract.Source{Name: "kernel", XZ: kernelarm64.KernelXZ(), Size: kernelarm64.KernelSize, SHA256: kernelarm64.KernelSHA256},
			Busybox: extract.Source{Name: "busybox", XZ: kernelarm64.BusyboxXZ(), Size: kernelarm64.BusyboxSize, SHA256: kernelarm64.BusyboxSHA256},
			Agent:   extract.Source{Name: "agent", XZ: kernelarm64.AgentXZ(), Size: kernelarm64.AgentSize, SHA256: kernelarm64.AgentSHA256},
		}, nil
	}
	return Set{}, fmt.Errorf("no bundled assets for GOARCH=%s (amd64, arm64)", arch)
}
