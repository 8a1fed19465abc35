package main

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"sort"
	"strings"
)

// hostToolVars are make variables for the optional host tools whose
// versions Kconfig writes into .config (and so into the kernel's
// /proc/config.gz): pahole, rustc and bindgen. Each points at a path that
// does not exist, so a machine with them builds the bytes a machine
// without them builds; the kernels need none of them (no BTF, no Rust).
// The linker and assembler come from the cross prefix and the compiler
// from CC, all from the Debian 12 build packages.
var hostToolVars = []string{
	"PAHOLE=/nonexistent/pahole",
	"RUSTC=/nonexistent/rustc",
	"BINDGEN=/nonexistent/bindgen",
}

// chosenProbes are the .config values Kconfig computes by running host
// tools, with the value the pipeline chose for each: the tools of
// hostToolVars absent, GCC and GNU binutils as the toolchain.
var chosenProbes = map[string]string{
	"CONFIG_PAHOLE_VERSION":     "0",
	"CONFIG_RUSTC_VERSION":      "0",
	"CONFIG_RUSTC_LLVM_VERSION": "0",
	"CONFIG_CLANG_VERSION":      "0",
	"CONFIG_LLD_VERSION":        "0",
	"CONFIG_CC_IS_GCC":          "y",
	"CONFIG_AS_IS_GNU":          "y",
	"CONFIG_LD_IS_BFD":          "y",
}

// unchosenProbes are the options Kconfig sets only when a host tool the
// kernels do not use is there (rustc, bindgen, pahole, clang, lld), or
// when its version passes some mark: each must stay unset. Options whose
// names start with one of probePrefixes are such marks too.
var (
	unchosenProbes = []string{
		"CONFIG_RUST", "CONFIG_RUST_IS_AVAILABLE", "CONFIG_RUSTC_VERSION_TEXT", "CONFIG_BINDGEN_VERSION_TEXT",
		"CONFIG_HAVE_CFI_ICALL_NORMALIZE_INTEGERS_RUSTC",
		"CONFIG_CC_IS_CLANG", "CONFIG_AS_IS_LLVM", "CONFIG_LD_IS_LLD",
	}
	probePrefixes = []string{"CONFIG_RUSTC_HAS_", "CONFIG_PAHOLE_HAS_"}
)

// checkHostProbes fails, naming each option, if a kernel .config carries a
// value taken from a host tool that the pipeline did not choose.
func checkHostProbes(config string) error {
	values := configValues(config)
	var leaks []string
	for name, want := range chosenProbes {
		if got, ok := values[name]; !ok || got != want {
			if !ok {
				got = "(not set)"
			}
			leaks = append(leaks, fmt.Sprintf("%s=%s (the pipeline chooses %s)", name, got, want))
		}
	}
	for name, got := range values {
		if got == "n" {
			continue
		}
		leak := slices.Contains(unchosenProbes, name)
		for _, p := range probePrefixes {
			leak = leak || strings.HasPrefix(name, p)
		}
		if leak {
			leaks = append(leaks, fmt.Sprintf("%s=%s (from a host tool the pipeline does not use)", name, got))
		}
	}
	if len(leaks) > 0 {
		sort.Strings(leaks)
		return fmt.Errorf("host-dependent value(s) in .config; the bytes would depend on the build machine:\n  %s",
			strings.Join(leaks, "\n  "))
	}
	return nil
}

// configValues maps each CONFIG_ option a .config assigns to its value.
func configValues(config string) map[string]string {
	values := map[string]string{}
	for _, l := range strings.Split(config, "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && strings.HasPrefix(k, "CONFIG_") {
			values[k] = v
		}
	}
	return values
}

// toolchain describes the compiler and linker a kernel was built with, as
// the manifest records them: the compiler's version line as Kconfig saw
// it (CONFIG_CC_VERSION_TEXT) and the first line of `<ld> --version`. The
// bytes depend on both.
func toolchain(ctx context.Context, config, ld string) (string, error) {
	cc := strings.Trim(configValues(config)["CONFIG_CC_VERSION_TEXT"], `"`)
	if cc == "" {
		return "", fmt.Errorf("kernel .config has no CONFIG_CC_VERSION_TEXT")
	}
	out, err := exec.CommandContext(ctx, ld, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w", ld, err)
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return cc + "; " + strings.TrimSpace(line), nil
}
