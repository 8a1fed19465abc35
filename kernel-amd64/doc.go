// Package kernelamd64 holds the supermachine-kernel assets for linux/amd64: the
// Linux kernel, a static busybox and the supermachine agent, each packed
// with xz and embedded, with generated constants that describe them
// (sizes, SHA-256 of the raw and the packed bytes, versions, sources).
//
// This module is data only: it imports nothing beyond the standard library.
// Most programs import github.com/supermachine-go/supermachine-kernel/kernel
// instead, which picks this module on GOARCH=amd64 and decodes, verifies and
// extracts the assets. manifest.json beside the blobs says the same as the
// constants, for people; SOURCES.md and LICENSES/ say where the sources are
// and under which licences the blobs are distributed.
//
// Everything but this file and go.mod is written by go run ./tools/assets.
package kernelamd64
