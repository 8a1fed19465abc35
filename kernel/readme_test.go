package kernel_test

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/supermachine-go/supermachine-kernel/kernel"
)

// TestREADMEVMMTable checks the README's VMM table against the builder:
// every command line the table shows for a VMM is what CommandLine
// returns for that VMM's options, in order, and every VMM has its row.
func TestREADMEVMMTable(t *testing.T) {
	type O = kernel.CommandLineOptions
	rows := map[string][]O{
		"Firecracker, x86-64":                    {{Arch: "amd64"}},
		"Firecracker, arm64":                     {{Arch: "arm64", Console: "ttyS0"}},
		"Cloud Hypervisor":                       {{Arch: "amd64", Shape: kernel.ShapePCI}, {Arch: "amd64", Shape: kernel.ShapeVirtioConsole}},
		"QEMU microvm (`-M microvm,acpi=off`)":   {{Arch: "amd64"}},
		"QEMU virt (MMIO, arm64)":                {{Arch: "arm64"}},
		"QEMU q35 / virt with PCI devices":       {{Arch: "amd64", Shape: kernel.ShapePCI}, {Arch: "arm64", Shape: kernel.ShapePCI}},
		"Apple Virtualization.framework (arm64)": {{Arch: "arm64", Shape: kernel.ShapeVirtioConsole}},
		"crosvm":                                 {{Arch: "amd64", Shape: kernel.ShapePCI}},
		"libkrun-style HVF VMMs (arm64)":         {{Arch: "arm64", Console: "hvc0"}},
	}
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(b), "### Kernels for each VMM")
	if !ok {
		t.Fatal("README has no section \"Kernels for each VMM\"")
	}
	sec, _, _ = strings.Cut(sec, "\n#")
	code := regexp.MustCompile("`(console=[^`]*)`")
	seen := map[string]bool{}
	for _, line := range strings.Split(sec, "\n") {
		cells := strings.Split(line, " | ")
		if len(cells) < 5 || !strings.HasPrefix(line, "| ") || strings.HasPrefix(line, "| VMM") {
			continue
		}
		name := strings.TrimPrefix(cells[0], "| ")
		opts, ok := rows[name]
		if !ok {
			t.Errorf("README row %q: no such VMM in this test", name)
			continue
		}
		seen[name] = true
		var got, want []string
		for _, m := range code.FindAllStringSubmatch(cells[2], -1) {
			got = append(got, m[1])
		}
		for _, o := range opts {
			want = append(want, kernel.CommandLine(o))
		}
		if !slices.Equal(got, want) {
			t.Errorf("README row %q shows %q, the builder gives %q", name, got, want)
		}
	}
	for name := range rows {
		if !seen[name] {
			t.Errorf("README's VMM table has no row %q", name)
		}
	}
}
