//go:build !linux

package microvm

import (
	"context"
	"errors"
	"io"
)

// errVirtioFS: virtiofsd and its read-only views are Linux's.
var errVirtioFS = errors.New("virtio-fs shares need a Linux host (virtiofsd); Sharing9P works here")

func virtiofsUsable() error { return errVirtioFS }

type virtiofsds struct{}

func startVirtiofsds(context.Context, string, []hostShare, io.Writer) (*virtiofsds, []string, error) {
	return nil, nil, errVirtioFS
}

func virtiofsdSocket(dir, tag string) string { return dir + "/virtiofsd-" + tag + ".sock" }

func (*virtiofsds) messages() string { return "" }
func (*virtiofsds) stop()            {}
