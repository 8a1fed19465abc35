package main

// errVMExecUnsupported is nil: vmexec runs on Linux.
var errVMExecUnsupported error
