// Command assets builds, packs and verifies the blobs that the per-arch
// modules kernel-amd64 and kernel-arm64 embed: the Linux kernel, a static
// busybox and the supermachine agent, all from the pinned inputs in
// tools/pins.json and tools/kernel/*.config.
//
// Run it from the repository root:
//
//	go run ./tools/assets build            # build and pack everything
//	go run ./tools/assets build -only agent -arch arm64
//	go run ./tools/assets verify -clean    # rebuild from clean trees, compare
//	go run ./tools/assets check            # check the committed blobs
//
// Build trees, downloads and logs stay under build/ (git-ignored), so a
// second build is incremental. The kernel build takes tens of minutes on
// two cores; progress is printed every 15 seconds.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// Assets and arches the pipeline knows, in manifest order.
var (
	allArches = []string{"amd64", "arm64"}
	allAssets = []string{"kernel", "busybox", "agent"}
)

const usage = `usage: go run ./tools/assets <command> [flags]

commands:
  build   build the selected assets from pinned inputs and pack them into
          kernel-<arch>/ (blobs, manifest.json, generated Go constants)
  verify  rebuild the selected assets and compare them with the committed
          manifest; names every blob that differs
  check   decode the committed blobs and check hashes, formats and applets
  gen     recompute the derived entries of kernel-<arch>/manifest.json (the
          amd64 vmlinux) from the committed kernel blob, then regenerate the
          Go files from the manifest: the constants in kernel-<arch>/, the
          wiring in kernel/assets_<arch>.go and internal/guestassets/<arch>_generated.go

flags:
`

func main() {
	if len(os.Args) < 2 || strings.HasPrefix(os.Args[1], "-") {
		fmt.Fprint(os.Stderr, usage)
		newFlags("build", &options{}).PrintDefaults()
		os.Exit(2)
	}
	cmd := os.Args[1]
	var o options
	fs := newFlags(cmd, &o)
	if err := fs.Parse(os.Args[2:]); err != nil {
		os.Exit(2)
	}
	// A signal cancels ctx, which kills the commands running (make and
	// the processes it started) before the tool exits.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cmd, &o); err != nil {
		fmt.Fprintf(os.Stderr, "assets %s: %v\n", cmd, err)
		os.Exit(1)
	}
}

type options struct {
	arches, only  string
	root, work    string
	kernelTarball string
	kernelSHA256  string
	clean         bool
	jobs          int
}

func newFlags(name string, o *options) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.StringVar(&o.arches, "arch", strings.Join(allArches, ","), "comma-separated arches")
	fs.StringVar(&o.only, "only", strings.Join(allAssets, ","), "comma-separated assets: kernel, busybox, agent")
	fs.StringVar(&o.root, "root", ".", "repository root")
	fs.StringVar(&o.work, "work", "", "build directory (default <root>/build)")
	fs.StringVar(&o.kernelTarball, "kernel-tarball", "", "use this Linux 6.12 source tarball instead of the pinned Debian package")
	fs.StringVar(&o.kernelSHA256, "kernel-sha256", "", "SHA-256 of -kernel-tarball (required with it)")
	fs.BoolVar(&o.clean, "clean", false, "build the kernel in a fresh tree without ccache (proves reproducibility)")
	fs.IntVar(&o.jobs, "j", 0, "parallel make jobs (default: number of CPUs)")
	return fs
}

func run(ctx context.Context, cmd string, o *options) error {
	arches, err := pick("arch", o.arches, allArches)
	if err != nil {
		return err
	}
	assets, err := pick("asset", o.only, allAssets)
	if err != nil {
		return err
	}
	root, err := filepath.Abs(o.root)
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(root, "tools", "pins.json")); err != nil {
		return fmt.Errorf("%s is not the repository root (no tools/pins.json): run from the root or pass -root", root)
	}
	if (o.kernelTarball == "") != (o.kernelSHA256 == "") {
		return errors.New("-kernel-tarball and -kernel-sha256 go together")
	}
	work := o.work
	if work == "" {
		work = filepath.Join(root, "build")
	}
	p := &pipeline{root: root, work: work, opts: o}
	if err := p.loadPins(); err != nil {
		return err
	}
	switch cmd {
	case "build":
		return p.build(ctx, arches, assets)
	case "verify":
		return p.verify(ctx, arches, assets)
	case "check":
		return p.checkCommitted(arches)
	case "gen":
		for _, a := range arches {
			if err := p.genArch(a); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("unknown command %q (want build, verify, check or gen)", cmd)
}

// pick parses a comma-separated selection and keeps the canonical order.
func pick(what, list string, known []string) ([]string, error) {
	chosen := map[string]bool{}
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !slices.Contains(known, s) {
			return nil, fmt.Errorf("unknown %s %q (known: %s)", what, s, strings.Join(known, ", "))
		}
		chosen[s] = true
	}
	var out []string
	for _, k := range known {
		if chosen[k] {
			out = append(out, k)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no %s selected", what)
	}
	return out, nil
}
