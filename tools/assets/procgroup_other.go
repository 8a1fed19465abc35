//go:build !unix

package main

import "os/exec"

// inProcessGroup leaves cmd as it is where there are no process groups:
// the context's end kills the command's process alone.
func inProcessGroup(*exec.Cmd) {}
