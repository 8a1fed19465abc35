package kernel_test

import (
	"strings"
	"testing"

	"github.com/supermachine-go/supermachine-kernel/kernel"
)

// TestCommandLine pins the command line of every shape on both arches:
// these strings are what the README's VMM table shows and what the boot
// tests boot with.
func TestCommandLine(t *testing.T) {
	type O = kernel.CommandLineOptions
	for _, c := range []struct {
		o     O
		extra []string
		want  string
	}{
		{O{Arch: "amd64"}, nil, "console=ttyS0 reboot=t no_timer_check panic=-1 quiet dummy.numdummies=0"},
		{O{Arch: "arm64"}, nil, "console=ttyAMA0 panic=-1 quiet dummy.numdummies=0"},
		{O{Arch: "amd64", Shape: kernel.ShapePCI}, nil, "console=ttyS0 reboot=t no_timer_check panic=-1 quiet dummy.numdummies=0"},
		{O{Arch: "arm64", Shape: kernel.ShapePCI}, nil, "console=ttyAMA0 panic=-1 quiet dummy.numdummies=0"},
		{O{Arch: "arm64", Shape: kernel.ShapeVirtioConsole}, nil, "console=hvc0 panic=-1 quiet dummy.numdummies=0"},
		{O{Arch: "amd64", Shape: kernel.ShapeVirtioConsole}, nil, "console=hvc0 reboot=t no_timer_check panic=-1 quiet dummy.numdummies=0"},
		{O{Arch: "arm64", Console: "ttyS0"}, nil, "console=ttyS0 panic=-1 quiet dummy.numdummies=0"},
		{O{Arch: "amd64", Emulated: true, TSCKHz: 2100000}, []string{"supermachine.debug=1"},
			"console=ttyS0 reboot=t no_timer_check tsc_early_khz=2100000 noapictimer tsc=reliable panic=-1 quiet dummy.numdummies=0 supermachine.debug=1"},
		// Verbose leaves quiet out; the user's words come last and win.
		{O{Arch: "arm64", Verbose: true}, []string{"dummy.numdummies=1"},
			"console=ttyAMA0 panic=-1 dummy.numdummies=0 dummy.numdummies=1"},
		// Emulation changes nothing on arm64: its generic timer needs no
		// calibration.
		{O{Arch: "arm64", Emulated: true, TSCKHz: 2100000}, nil, "console=ttyAMA0 panic=-1 quiet dummy.numdummies=0"},
	} {
		if got := kernel.CommandLine(c.o, c.extra...); got != c.want {
			t.Errorf("CommandLine(%+v, %q) = %q, want %q", c.o, c.extra, got, c.want)
		}
	}
	// The zero options are this build's arch.
	if got, want := kernel.CommandLine(kernel.CommandLineOptions{}), kernel.CommandLine(kernel.CommandLineOptions{Arch: kernel.Arch}); got != want {
		t.Errorf("zero options give %q, want %q", got, want)
	}
	// Emulated x86-64 without a TSC frequency reads the host's.
	got := kernel.CommandLine(kernel.CommandLineOptions{Arch: "amd64", Emulated: true})
	if !strings.Contains(got, " noapictimer tsc=reliable ") {
		t.Errorf("emulated amd64: %q lacks noapictimer", got)
	}
	if kernel.ShapeVirtioConsole.String() != "virtio-console" || kernel.Shape(9).String() != "Shape(9)" {
		t.Errorf("Shape.String: %q %q", kernel.ShapeVirtioConsole, kernel.Shape(9))
	}
}
