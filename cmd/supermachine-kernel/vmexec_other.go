//go:build !linux

package main

import "errors"

// errVMExecUnsupported says why vmexec cannot run here: the guest's root
// is the host's own, which must be a Linux system for a Linux binary.
var errVMExecUnsupported = errors.New("vmexec needs a Linux host: the guest runs the binary on the host's own files, which must be a Linux system's (boot works here)")
