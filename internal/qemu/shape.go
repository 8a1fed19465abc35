package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/supermachine-go/supermachine-kernel/internal/lifetime"
	"github.com/supermachine-go/supermachine-kernel/kernel"
)

// A Shape is the machine QEMU gives the guest: one per kind of VMM the
// bundled kernels target, so that a boot under QEMU proves the kernel on
// that VMM's devices.
type Shape int

const (
	// ShapeMMIO is the default: amd64 -M microvm,acpi=off (QEMU appends
	// the virtio_mmio.device= entries to the command line), arm64 -M virt
	// (devices in the device tree); virtio-*-device (MMIO) devices and a
	// UART console (8250 ttyS0, PL011 ttyAMA0).
	ShapeMMIO Shape = iota

	// ShapeFirecracker is the machine Firecracker gives: on amd64
	// microvm without ACPI and without an RTC, booting an ELF vmlinux
	// (kernel.Vmlinux) through its PVH entry as Firecracker's released
	// versions do, virtio-mmio devices on the command line, the 8250
	// console. On arm64 it is ShapeMMIO (Firecracker boots the Image with
	// virtio-mmio devices in the device tree). The agent channel stays a
	// virtio-serial port: Firecracker's own is vsock, which a QEMU guest
	// here cannot reach without /dev/vhost-vsock.
	ShapeFirecracker

	// ShapePCI is a PCI machine, as Cloud Hypervisor and QEMU users
	// give: amd64 -M q35, arm64 -M virt, every device virtio-pci
	// (modern only, disable-legacy=on, as Cloud Hypervisor), the UART
	// console.
	ShapePCI

	// ShapeVirtualization is the machine Apple's Virtualization.framework
	// gives an arm64 guest: -M virt with only virtio-pci devices and no
	// UART (the PL011 is removed from the device tree, see
	// NoUARTDeviceTree); the console is port 0 of a virtio-serial-pci
	// device (virtconsole, hvc0), and the agent's port is on the same
	// device. arm64 only.
	ShapeVirtualization
)

// String returns the shape's name, as the boot tests and the README use it.
func (s Shape) String() string {
	switch s {
	case ShapeMMIO:
		return "mmio"
	case ShapeFirecracker:
		return "firecracker"
	case ShapePCI:
		return "pci"
	case ShapeVirtualization:
		return "virtualization-framework"
	}
	return fmt.Sprintf("Shape(%d)", int(s))
}

// KernelShape is the shape of the kernel command line for s.
func (s Shape) KernelShape() kernel.Shape {
	switch s {
	case ShapePCI:
		return kernel.ShapePCI
	case ShapeVirtualization:
		return kernel.ShapeVirtioConsole
	}
	return kernel.ShapeMMIO
}

// pci reports whether the shape's devices are virtio-pci.
func (s Shape) pci() bool { return s == ShapePCI || s == ShapeVirtualization }

// machine returns the -M value of s for arch, or an error for a shape
// the arch does not have.
func (s Shape) machine(arch string) (string, error) {
	switch {
	case s == ShapeVirtualization && arch != "arm64":
		return "", fmt.Errorf("qemu: shape %s is arm64 only", s)
	case s > ShapeVirtualization || s < 0:
		return "", fmt.Errorf("qemu: unknown shape %d", int(s))
	case arch == "arm64":
		return "virt", nil
	case s == ShapePCI:
		// q35 with SeaBIOS: PCI found through port 0xcf8, SMP through
		// the firmware's MP tables (the kernel has no ACPI).
		return "q35", nil
	case s == ShapeFirecracker:
		return "microvm,acpi=off,rtc=off", nil
	}
	// microvm without ACPI: QEMU appends virtio_mmio.device= entries to
	// the command line; no PCI, no firmware tables to parse.
	return "microvm,acpi=off", nil
}

// cmdline returns the kernel command line for c on arch, emulated or
// not.
func (c Config) cmdline(arch string, emulated bool) string {
	var extra []string
	if arch == "amd64" && (c.Shape == ShapeMMIO || c.Shape == ShapeFirecracker) {
		// The microvm machines here have neither ACPI tables nor PCI:
		// saying so spares the kernel the probes (and their error lines
		// on the console) and about 0.1-0.2 s of an emulated boot.
		extra = append(extra, "acpi=off", "pci=off")
	}
	return kernel.CommandLine(kernel.CommandLineOptions{
		Arch: arch, Shape: c.Shape.KernelShape(), Emulated: emulated,
	}, append(extra, c.Append...)...)
}

// consoleArgs returns the arguments that connect the guest's console to
// QEMU's standard output.
func (c Config) consoleArgs() []string {
	if c.Shape == ShapeVirtualization {
		// No UART: port 0 of a virtio-serial-pci device is the console.
		a := []string{"-serial", "none",
			"-device", "virtio-serial-pci,id=vser0,disable-legacy=on",
			"-chardev", "stdio,id=console,signal=off",
			"-device", "virtconsole,bus=vser0.0,nr=0,chardev=console"}
		if c.DTB != "" {
			a = append(a, "-dtb", c.DTB)
		}
		return a
	}
	return []string{"-serial", "stdio"}
}

// deviceArgs returns the disk, agent channel and network devices of c.
func (c Config) deviceArgs(arch string) []string {
	var a []string
	dev := func(kind string) string {
		if c.Shape.pci() {
			return "virtio-" + kind + "-pci,disable-legacy=on"
		}
		return "virtio-" + kind + "-device"
	}
	// QEMU virt hands out its virtio-mmio transports from the top, and
	// Linux probes them bottom up: add MMIO disks in reverse so the first
	// is /dev/vda on arm64 as on x86-64. PCI slots are probed in order.
	order := make([]int, len(c.Disks))
	for i := range order {
		order[i] = i
		if arch == "arm64" && !c.Shape.pci() {
			order[i] = len(c.Disks) - 1 - i
		}
	}
	for _, i := range order {
		d := c.Disks[i]
		// Absolute: QEMU reads "name:" at the start of a relative path
		// as a protocol (nbd:, http:, json:).
		path, err := filepath.Abs(d.Path)
		if err != nil {
			path = d.Path
		}
		f := d.Format
		if f == "" {
			f = "raw"
		}
		drive := fmt.Sprintf("id=disk%d,file=%s,format=%s,if=none", i, OptValue(path), OptValue(f))
		if d.ReadOnly {
			drive += ",readonly=on"
		}
		a = append(a, "-drive", drive, "-device", fmt.Sprintf("%s,drive=disk%d", dev("blk"), i))
	}
	if c.AgentSocket != "" {
		bus := "vser0.0" // ShapeVirtualization: beside the console
		if c.Shape != ShapeVirtualization {
			bus = "vsera.0"
			a = append(a, "-device", dev("serial")+",id=vsera")
		}
		a = append(a,
			"-chardev", "socket,id=agent,path="+OptValue(c.AgentSocket)+",server=on,wait=off",
			"-device", "virtserialport,bus="+bus+",chardev=agent,name="+AgentPortName+",id="+agentPortID)
	}
	if c.Net {
		a = append(a, "-netdev", "user,id=net0", "-device", dev("net")+",netdev=net0")
	}
	for i, s := range c.Shares9P {
		a = append(a, s.args(i, dev("9p"))...)
	}
	if len(c.VirtioFS) > 0 {
		fs := "vhost-user-fs-pci"
		if !c.Shape.pci() {
			// vhost-user devices need virtio 1.0; QEMU's virtio-mmio
			// transport defaults to the legacy interface.
			a = append(a, "-global", "virtio-mmio.force-legacy=false")
			fs = "vhost-user-fs-device"
		}
		for i, v := range c.VirtioFS {
			a = append(a, "-chardev", fmt.Sprintf("socket,id=vfs%d,path=%s", i, OptValue(v.Socket)),
				"-device", fmt.Sprintf("%s,chardev=vfs%d,tag=%s", fs, i, OptValue(v.Tag)))
		}
	}
	return a
}

// checkKernel checks what the shape requires of the kernel file: the
// Firecracker shape on amd64 boots an ELF vmlinux, not a bzImage.
func (c Config) checkKernel(arch string) error {
	if c.Shape != ShapeFirecracker || arch != "amd64" {
		return nil
	}
	f, err := os.Open(c.Kernel)
	if err != nil {
		return fmt.Errorf("qemu: %w", err)
	}
	defer f.Close()
	magic := make([]byte, 4)
	if _, err := f.ReadAt(magic, 0); err != nil || string(magic) != "\x7fELF" {
		return fmt.Errorf("qemu: shape %s boots an ELF vmlinux (kernel.Vmlinux); %s is not an ELF file", c.Shape, c.Kernel)
	}
	return nil
}

// NoUARTDeviceTree writes to path the device tree QEMU would give the
// guest of c (an arm64 -M virt machine), minus its PL011 UART: the node,
// /chosen/stdout-path and the serial0 alias. Set it as c.DTB for
// ShapeVirtualization, so that the guest has no UART at all, as on
// Virtualization.framework. It needs fdtput (Debian package
// device-tree-compiler).
func NoUARTDeviceTree(ctx context.Context, c Config, path string) error {
	if c.Arch != "arm64" {
		return fmt.Errorf("qemu: NoUARTDeviceTree: arch %q has no device tree here (arm64 only)", c.Arch)
	}
	fdtput, err := exec.LookPath("fdtput")
	if err != nil {
		return fmt.Errorf("qemu: fdtput not found; install the Debian package device-tree-compiler: %w", err)
	}
	c.DTB = ""
	bin, args, err := c.Args(TCG)
	if err != nil {
		return err
	}
	for i := range args {
		if args[i] == "-M" && i+1 < len(args) {
			args[i+1] += ",dumpdtb=" + OptValue(path)
		}
	}
	if out, err := lifetime.CombinedOutput(exec.CommandContext(ctx, bin, args...)); err != nil {
		return fmt.Errorf("qemu: dumping the device tree: %w\n%s", err, out)
	}
	dtb, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	// The UART node is pl011@<address>; find its name in the blob.
	i := bytes.Index(dtb, []byte("pl011@"))
	if i < 0 {
		return errors.New("qemu: the virt device tree has no pl011@ node")
	}
	end := bytes.IndexByte(dtb[i:], 0)
	node := "/" + string(dtb[i:i+end])
	for _, cmd := range [][]string{
		{"-r", path, node},
		{"-d", path, "/chosen", "stdout-path"},
	} {
		if out, err := lifetime.CombinedOutput(exec.CommandContext(ctx, fdtput, cmd...)); err != nil {
			return fmt.Errorf("qemu: fdtput %s: %w\n%s", strings.Join(cmd, " "), err, out)
		}
	}
	// The alias exists on some QEMU versions only.
	lifetime.Run(exec.CommandContext(ctx, fdtput, "-d", path, "/aliases", "serial0"))
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		return fmt.Errorf("qemu: no device tree at %s", filepath.Clean(path))
	}
	return nil
}

// Shapes lists every shape, in order.
var Shapes = []Shape{ShapeMMIO, ShapeFirecracker, ShapePCI, ShapeVirtualization}

// ParseShape returns the shape whose String is s.
func ParseShape(s string) (Shape, error) {
	for _, sh := range Shapes {
		if sh.String() == s {
			return sh, nil
		}
	}
	names := make([]string, len(Shapes))
	for i, sh := range Shapes {
		names[i] = sh.String()
	}
	return 0, fmt.Errorf("unknown machine shape %q (want %s)", s, strings.Join(names, ", "))
}
