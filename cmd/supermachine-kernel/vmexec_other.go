//go:build !linux

package main

import (
	"errors"
	"io"
)

// errVMExecUnsupported says why vmexec cannot run here: it shares the
// host's files with the guest through virtiofsd in a mount namespace of
// its own, which only Linux has.
var errVMExecUnsupported = errors.New("vmexec needs a Linux host: it shares the host's files with the guest through virtiofsd and Linux mount namespaces (boot works here)")

// cmdVirtiofsdHelper is vmexec's Linux-only helper.
func cmdVirtiofsdHelper([]string, io.Writer) error { return errVMExecUnsupported }
