// Package arch is the one table of per-arch facts: for each GOARCH the
// project bundles a guest for, its ELF machine, its QEMU system emulator
// and the Debian package that provides it, its user-mode emulator, its
// serial console device, its Debian arch name and its kernel's file
// name. It imports only the standard library, so that every package
// (the kernel facade included) may use it.
package arch

import (
	"debug/elf"
	"fmt"
	"sort"
)

// Facts are one arch's facts.
type Facts struct {
	GOARCH      string      // amd64, arm64
	ELFMachine  elf.Machine // of its executables and ELF kernels
	QEMU        string      // QEMU system emulator, e.g. qemu-system-x86_64
	QEMUPackage string      // the Debian package that provides QEMU
	QEMUUser    string      // QEMU's user-mode name: x86_64, aarch64 (qemu-<name>-static)
	Console     string      // the serial console device of the default machine
	DebianArch  string      // dpkg's name for it
	KernelFile  string      // the bootable kernel's file name: bzImage, Image
}

// All holds the facts of every bundled arch, keyed by GOARCH.
var All = map[string]Facts{
	"amd64": {GOARCH: "amd64", ELFMachine: elf.EM_X86_64, QEMU: "qemu-system-x86_64", QEMUPackage: "qemu-system-x86",
		QEMUUser: "x86_64", Console: "ttyS0", DebianArch: "amd64", KernelFile: "bzImage"},
	"arm64": {GOARCH: "arm64", ELFMachine: elf.EM_AARCH64, QEMU: "qemu-system-aarch64", QEMUPackage: "qemu-system-arm",
		QEMUUser: "aarch64", Console: "ttyAMA0", DebianArch: "arm64", KernelFile: "Image"},
}

// Names are the bundled arches, sorted.
func Names() []string {
	var n []string
	for k := range All {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// For returns the facts of goarch.
func For(goarch string) (Facts, error) {
	f, ok := All[goarch]
	if !ok {
		return Facts{}, fmt.Errorf("unsupported arch %q (%s)", goarch, namesList())
	}
	return f, nil
}

// ByELF returns the facts of the arch whose ELF machine is m.
func ByELF(m elf.Machine) (Facts, bool) {
	for _, f := range All {
		if f.ELFMachine == m {
			return f, true
		}
	}
	return Facts{}, false
}

func namesList() string {
	s := ""
	for i, n := range Names() {
		if i > 0 {
			s += ", "
		}
		s += n
	}
	return s
}
