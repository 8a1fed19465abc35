#!/usr/bin/env bash
# Sets up a Debian 12 machine for the asset pipeline, then runs
# go run ./tools/assets [build|verify|check] [flags] (default: build, which
# rebuilds every blob from the pinned sources).
# Build trees, downloads and ccache stay in build/ for fast rebuilds.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

if ! dpkg --print-foreign-architectures | grep -qx arm64; then
	echo "build.sh: dpkg --add-architecture arm64 (for the arm64 busybox-static .deb)"
	$SUDO dpkg --add-architecture arm64
fi
$SUDO apt-get update -qq
# make/gcc/bc/flex/bison/libelf/libssl: the kernel build; lz4: the bzImage
# compression; gcc-aarch64-linux-gnu: the arm64 kernel; linux-source-6.12:
# the pinned kernel source (tools/pins.json; apt-get download is used when
# the installed version is not the pinned one).
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
	make gcc libc6-dev bc flex bison libelf-dev libssl-dev lz4 xz-utils ccache \
	gcc-aarch64-linux-gnu libc6-dev-arm64-cross dpkg-dev ca-certificates linux-source-6.12 >/dev/null
command -v go >/dev/null || { echo "build.sh: Go 1.26 or newer is required (https://go.dev/dl/)" >&2; exit 1; }
cmd=build
case "${1:-}" in build | verify | check) cmd=$1; shift ;; esac
exec go run ./tools/assets "$cmd" "$@"
