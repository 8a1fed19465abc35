package qemu

import (
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"os"

	archfacts "github.com/supermachine-go/supermachine-kernel/internal/arch"
)

// Limits are the guest sizes a boot accepts for an arch.
type Limits struct {
	// MinMemoryMiB is the least memory the bundled kernel and agent
	// initramfs (the Go agent as init) boot to a ready agent in,
	// measured under TCG in 2 MiB steps (supermachine-kernel boot -kvm
	// off [-arch arm64] -mem N -- true on the default busybox root, and
	// vmexec -kvm off -mem N of a binary of each arch): amd64 boots with
	// 50 MiB and not 48, arm64 with 48 and not 46. The edge is where
	// the guest's MemTotal passes 32 MiB: the agent's Go runtime maps a
	// 32 MiB heap arena index at start, and the kernel's default
	// overcommit heuristic refuses a mapping larger than all RAM ("out
	// of memory allocating heap arena map", then a panic as init
	// exits). A few MiB lower the kernel panics before init ("System is
	// deadlocked on memory"). amd64 gets 2 MiB above its edge: at 50
	// one boot in about 125 panicked as its first command ran, with 3.5
	// MiB free; none did at 48 on arm64, which has 6 MiB free there.
	MinMemoryMiB int
	// MaxMemoryMiB is QEMU's limit for the machine (1 TiB here).
	MaxMemoryMiB int
	// MaxCPUs is the machine's limit: 288 for QEMU's x86 machines, 8
	// for arm64 virt with its default GICv2.
	MaxCPUs int
}

// LimitsFor returns the limits of a guest of arch.
func LimitsFor(arch string) Limits {
	if arch == "arm64" {
		return Limits{MinMemoryMiB: 48, MaxMemoryMiB: 1 << 20, MaxCPUs: 8}
	}
	return Limits{MinMemoryMiB: 52, MaxMemoryMiB: 1 << 20, MaxCPUs: 288}
}

// CheckMemory refuses a memory size outside the limits of arch; bundled
// says whether the guest boots the bundled kernel and initramfs, whose
// least memory is known.
func (l Limits) CheckMemory(mib int, bundled bool) error {
	low := 1
	if bundled {
		low = l.MinMemoryMiB
	}
	if mib < low || mib > l.MaxMemoryMiB {
		why := ""
		if bundled {
			why = fmt.Sprintf("; %d MiB is the least the bundled kernel and initramfs boot in", l.MinMemoryMiB)
		}
		return fmt.Errorf("%d MiB is out of range: want %d to %d MiB%s", mib, low, l.MaxMemoryMiB, why)
	}
	return nil
}

// CheckCPUs refuses a number of virtual CPUs the machine cannot have.
func (l Limits) CheckCPUs(n int) error {
	if n < 1 || n > l.MaxCPUs {
		return fmt.Errorf("%d virtual CPUs is out of range: want 1 to %d", n, l.MaxCPUs)
	}
	return nil
}

// KernelArch tells the arch of a kernel image from its header: an x86
// bzImage ("HdrS" at 0x202), an arm64 Image ("ARM\x64" at 0x38) or an ELF
// file; "" if it cannot tell.
func KernelArch(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	hdr := make([]byte, 0x210)
	n, _ := io.ReadFull(f, hdr)
	hdr = hdr[:n]
	switch {
	case len(hdr) >= 4 && string(hdr[:4]) == elf.ELFMAG:
		if ef, err := elf.NewFile(f); err == nil {
			if a, ok := archfacts.ByELF(ef.Machine); ok {
				return a.GOARCH
			}
			return ef.Machine.String()
		}
	case len(hdr) >= 0x206 && string(hdr[0x202:0x206]) == "HdrS":
		return "amd64"
	case len(hdr) >= 0x3c && bytes.Equal(hdr[0x38:0x3c], []byte("ARM\x64")):
		return "arm64"
	}
	return ""
}

// check refuses, before QEMU starts, what would make it fail: sizes out
// of range, files that are missing or unreadable, a kernel of another
// arch. Errors name the Config field.
func (c Config) check(arch string) error {
	lim := LimitsFor(arch)
	if c.MemoryMiB != 0 {
		if err := lim.CheckMemory(c.MemoryMiB, false); err != nil {
			return fmt.Errorf("qemu: MemoryMiB: %w", err)
		}
	}
	if c.CPUs != 0 {
		if err := lim.CheckCPUs(c.CPUs); err != nil {
			return fmt.Errorf("qemu: CPUs: %w", err)
		}
	}
	files := []struct{ field, path string }{{"Kernel", c.Kernel}, {"Initrd", c.Initrd}, {"DTB", c.DTB}}
	for i, d := range c.Disks {
		files = append(files, struct{ field, path string }{fmt.Sprintf("Disks[%d]", i), d.Path})
	}
	for _, f := range files {
		if f.path == "" {
			continue
		}
		if err := readable(f.path); err != nil {
			return fmt.Errorf("qemu: %s: %w", f.field, err)
		}
	}
	if ka := KernelArch(c.Kernel); ka != "" && ka != arch {
		return fmt.Errorf("qemu: Kernel: %s is a kernel for %s, not for this %s guest", c.Kernel, ka, arch)
	}
	return nil
}

// readable checks that path opens for reading and is a regular file or a
// block device (opening a FIFO would block).
func readable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() && fi.Mode()&os.ModeDevice == 0 {
		return fmt.Errorf("%s is not a regular file or a block device", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	return f.Close()
}

// likelyCause guesses why QEMU exited without a word before the guest
// printed anything, from what the launcher knows.
func (c Config) likelyCause(arch string) string {
	mem := c.MemoryMiB
	if mem == 0 {
		mem = 256
	}
	var sizes int64
	for _, p := range []string{c.Kernel, c.Initrd} {
		if fi, err := os.Stat(p); err == nil {
			sizes += fi.Size()
		}
	}
	if min := LimitsFor(arch).MinMemoryMiB; mem < min {
		return fmt.Sprintf("likely cause: %d MiB of guest memory is too small for the kernel and initramfs (%.1f MiB of files; the bundled ones need %d MiB)", mem, float64(sizes)/(1<<20), min)
	}
	if ka := KernelArch(c.Kernel); ka == "" {
		return fmt.Sprintf("likely cause: %s is not a kernel QEMU can boot on this machine (neither a bzImage, an arm64 Image nor an ELF vmlinux)", c.Kernel)
	}
	return fmt.Sprintf("likely cause: the kernel stopped before its console came up (guest memory %d MiB for %.1f MiB of kernel and initramfs; a kernel without the console driver of this machine prints nothing)", mem, float64(sizes)/(1<<20))
}
