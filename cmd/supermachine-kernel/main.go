// Command supermachine-kernel shows, extracts and boots the bundled guest
// assets: the Linux kernel, busybox and the supermachine agent for the
// arch it was built for.
//
//	supermachine-kernel info [-json]
//	supermachine-kernel extract [DIR]
//	supermachine-kernel initramfs -o FILE [flags]
//	supermachine-kernel boot [flags] -- COMMAND [ARG...]
//	supermachine-kernel boot -image REF [flags] [-- COMMAND [ARG...]]
//	supermachine-kernel images [-rm REF|DIGEST|all]
//	supermachine-kernel exec -connect ADDR [flags] -- COMMAND [ARG...]
//	supermachine-kernel vmexec [flags] [--] BINARY [ARG...]
//
// Install it with go install github.com/supermachine-go/supermachine-kernel/cmd/supermachine-kernel@latest.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

const usage = `supermachine-kernel: the bundled microVM guest assets (kernel, busybox, agent)

usage:
  supermachine-kernel info [-json]
        arch, versions, sizes and SHA-256 of the bundled assets (-json:
        kernel.Info as JSON, whose schema is not manifest.json's)
  supermachine-kernel extract [DIR]
        write the kernel, busybox and agent (and on amd64 the ELF vmlinux
        derived from the bzImage) into DIR (default: into the
        content-addressed cache) and print their paths
  supermachine-kernel initramfs -o FILE [flags]
        write the agent initramfs (busybox, agent, generated /init)
  supermachine-kernel boot [flags] -- COMMAND [ARG...]
        boot the bundled kernel under QEMU on a root image, run COMMAND
        through the agent, stream its output and exit with its exit code
  supermachine-kernel boot -image REF [flags] [-- COMMAND [ARG...]]
        the same on a container image (registry reference, OCI layout or
        archive, docker save archive); without COMMAND it runs the image's
        Entrypoint and Cmd with its Env, WorkingDir and User
  supermachine-kernel images [-rm REF|DIGEST|all]
        list or remove the cached root images of container images
  supermachine-kernel exec -connect ADDR [flags] -- COMMAND [ARG...]
        run COMMAND through the agent of a running guest
  supermachine-kernel vmexec [flags] [--] BINARY [ARG...]
        run a Linux executable in a microVM of the bundled kernel for its
        arch, sharing the host's files; for go test -exec

Run "supermachine-kernel COMMAND -h" for the flags of a command.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// exitError carries the exit code a command should end the process with.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	var err error
	switch args[0] {
	case "info":
		err = cmdInfo(args[1:], stdout, stderr)
	case "extract":
		err = cmdExtract(ctx, args[1:], stdout, stderr)
	case "initramfs":
		err = cmdInitramfs(args[1:], stdout, stderr)
	case "boot":
		err = cmdBoot(ctx, args[1:], stdout, stderr)
	case "exec":
		err = cmdExec(ctx, args[1:], stdout, stderr)
	case "images":
		err = cmdImages(args[1:], stdout, stderr)
	case "vmexec":
		err = cmdVMExec(ctx, args[1:], stdout, stderr)
	case "vmexec-virtiofsd":
		err = cmdVirtiofsdHelper(args[1:], stderr)
	default:
		fmt.Fprintf(stderr, "supermachine-kernel: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	var ee exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	}
	fmt.Fprintf(stderr, "supermachine-kernel %s: %v\n", args[0], err)
	return 1
}

// errUsage is returned after a usage message was printed.
var errUsage = errors.New("usage")

func newFlags(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: supermachine-kernel %s %s\n\nflags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	return nil
}

// multiFlag collects a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }
