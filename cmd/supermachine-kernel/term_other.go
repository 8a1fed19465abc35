//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package main

import (
	"errors"
	"os"
)

// On this OS the CLI does not drive terminals: -tty runs the command on a
// pseudo-terminal in the guest, but the local terminal stays as it is.

func isTerminal(*os.File) bool { return false }

func termSize(*os.File) (rows, cols uint16, err error) {
	return 0, 0, errors.New("terminal size: not supported on this OS")
}

func makeRaw(*os.File) (func(), error) {
	return nil, errors.New("raw mode: not supported on this OS")
}

func notifyResize(chan<- os.Signal) {}
