#!/usr/bin/env bash
# Shows that the host's optional tools cannot change the kernels: rebuilds
# both kernels from clean trees twice and compares each build with the
# committed manifests (go run ./tools/assets verify -clean -only kernel):
#   1. with pahole installed (Debian package "pahole") and rustc on PATH;
#   2. with pahole removed and no rustc, bindgen or cargo on PATH.
# Kconfig writes the versions of these tools into .config, and so into the
# kernel's /proc/config.gz, unless the pipeline decides them.
#
# Two clean kernel builds of both arches: about an hour on two idle
# cores. Not part of CI. Needs root (apt-get) and a rustc somewhere
# (rustup's ~/.cargo/bin is looked for). With -config-only it compares
# only the .config each setup gives, which takes a minute.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

configOnly=false
if [ "${1:-}" = "-config-only" ]; then configOnly=true; fi

rustDir=$(dirname "$(command -v rustc 2>/dev/null || echo "$HOME/.cargo/bin/rustc")")
if [ ! -x "$rustDir/rustc" ]; then
	echo "reprocheck: no rustc found (on PATH or in ~/.cargo/bin); install one to test with it" >&2
	exit 1
fi
# PATH without any directory holding rustc, bindgen or cargo.
bare=$(printf '%s' "$PATH" | tr ':' '\n' | while read -r d; do
	[ -e "$d/rustc" ] || [ -e "$d/bindgen" ] || [ -e "$d/cargo" ] || printf '%s:' "$d"
done)
bare=${bare%:}

# configs DIR PATH: the .config of both arches as the pipeline makes them,
# into DIR/<arch>.config, by configuring without building.
configs() {
	local out=$PWD/$1 path=$2 src=build/linux-source-6.12
	[ -f "$src/Makefile" ] || { echo "reprocheck: run a build first (no $src)" >&2; exit 1; }
	for arch in amd64 arm64; do
		local obj="$out/$arch" a="ARCH=x86_64"
		[ "$arch" = arm64 ] && a="ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu-"
		rm -rf "$obj" && mkdir -p "$obj"
		cat tools/kernel/common.config "tools/kernel/$arch.config" >"$obj/fragment"
		for t in allnoconfig olddefconfig; do
			# The make variables are the pipeline's (tools/assets/hostprobe.go).
			# shellcheck disable=SC2086
			env -i PATH="$path" KCONFIG_CONFIG="$obj/.config" KCONFIG_ALLCONFIG="$obj/fragment" \
				make -s -C "$src" O="$obj" $a \
				PAHOLE=/nonexistent/pahole RUSTC=/nonexistent/rustc BINDGEN=/nonexistent/bindgen "$t"
		done
		cp "$obj/.config" "$out/$arch.config"
	done
}

run() { # NAME PATH
	echo "reprocheck: $1 (pahole: $(command -v pahole || echo none), rustc: $(PATH=$2 command -v rustc || echo none))"
	if $configOnly; then
		configs "build/reprocheck/$1" "$2"
	else
		PATH=$2 go run ./tools/assets verify -clean -only kernel
	fi
}

$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends pahole >/dev/null
run with-tools "$rustDir:$bare"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq pahole >/dev/null
run without-tools "$bare"
if $configOnly; then
	for arch in amd64 arm64; do
		cmp "build/reprocheck/with-tools/$arch.config" "build/reprocheck/without-tools/$arch.config"
		cmp "build/reprocheck/with-tools/$arch.config" "kernel-$arch/kernel.config"
	done
	echo "reprocheck: the .config of both arches is the committed one with and without pahole and rustc"
else
	echo "reprocheck: both builds match the committed manifests"
fi
