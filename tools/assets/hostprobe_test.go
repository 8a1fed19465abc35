package main

import (
	"strings"
	"testing"
)

const probedConfig = `CONFIG_CC_VERSION_TEXT="gcc (Debian 12.2.0-14+deb12u1) 12.2.0"
CONFIG_CC_IS_GCC=y
CONFIG_GCC_VERSION=120200
CONFIG_CLANG_VERSION=0
CONFIG_AS_IS_GNU=y
CONFIG_LD_IS_BFD=y
CONFIG_LLD_VERSION=0
CONFIG_RUSTC_VERSION=0
CONFIG_RUSTC_LLVM_VERSION=0
CONFIG_PAHOLE_VERSION=0
CONFIG_HAVE_RUST=y
# CONFIG_RUST_IS_AVAILABLE is not set
`

func TestCheckHostProbes(t *testing.T) {
	if err := checkHostProbes(probedConfig); err != nil {
		t.Fatalf("a config built with the chosen tools: %v", err)
	}
	for _, tc := range []struct{ from, to, name string }{
		{"CONFIG_PAHOLE_VERSION=0", "CONFIG_PAHOLE_VERSION=124", "CONFIG_PAHOLE_VERSION=124"},
		{"CONFIG_RUSTC_VERSION=0", "CONFIG_RUSTC_VERSION=109500", "CONFIG_RUSTC_VERSION=109500"},
		{"CONFIG_LLD_VERSION=0\n", "", "CONFIG_LLD_VERSION=(not set)"},
		{"# CONFIG_RUST_IS_AVAILABLE is not set", "CONFIG_RUST_IS_AVAILABLE=y", "CONFIG_RUST_IS_AVAILABLE=y"},
		{"CONFIG_PAHOLE_VERSION=0", "CONFIG_PAHOLE_VERSION=0\nCONFIG_RUSTC_HAS_UNNECESSARY_TRANSMUTES=y", "CONFIG_RUSTC_HAS_UNNECESSARY_TRANSMUTES=y"},
	} {
		err := checkHostProbes(strings.Replace(probedConfig, tc.from, tc.to, 1))
		if err == nil || !strings.Contains(err.Error(), tc.name) {
			t.Errorf("with %q: error %v does not name %s", tc.to, err, tc.name)
		}
	}
}
