package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/supermachine-go/supermachine-kernel/internal/oci"
	"github.com/supermachine-go/supermachine-kernel/kernel"
)

// imageFlags are boot's flags for container images, the guest arch and
// the settings of the command run in the guest.
type imageFlags struct {
	image, pull, arch, dir, user string
	env                          multiFlag
}

func (f *imageFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.image, "image", "", "boot a container image as the root: a registry reference NAME[:TAG|@DIGEST], an OCI layout directory, an OCI archive or a docker save archive (converted once, cached by digest; see the images command)")
	fs.StringVar(&f.pull, "pull", "missing", "when to fetch -image from its registry: missing (only what the cache lacks), always (resolve the tag again: one manifest request), never")
	fs.StringVar(&f.arch, "arch", kernel.Arch, "guest arch: amd64 or arm64 (the other arch than the host's runs under software emulation); picks the image of a multi-arch index")
	fs.Var(&f.env, "e", "set KEY=VALUE (or KEY, from this environment) for COMMAND, over the image's Env (repeatable)")
	fs.StringVar(&f.dir, "w", "", "working directory of COMMAND (default: the image's WorkingDir, else /)")
	fs.StringVar(&f.user, "u", "", "run COMMAND as uid[:gid] or name[:group] (default: the image's User, else root)")
}

// check refuses conflicting flags before anything starts.
func (f *imageFlags) check(root string) error {
	if f.image != "" && root != "" {
		return errors.New("-image and -root both give the root: use one")
	}
	if f.arch != "amd64" && f.arch != "arm64" {
		return fmt.Errorf("-arch %q: want amd64 or arm64", f.arch)
	}
	if _, err := oci.ParsePull(f.pull); err != nil {
		return fmt.Errorf("-pull: %w", err)
	}
	for _, kv := range f.env {
		if k, _, _ := strings.Cut(kv, "="); k == "" {
			return fmt.Errorf("-e %q: want KEY=VALUE or KEY", kv)
		}
	}
	return nil
}

// imageCacheDir is where converted images live: <asset cache>/images.
func imageCacheDir() (string, error) {
	dir, err := kernel.DefaultCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "images"), nil
}

// prepare makes the -image root ready for the guest arch.
func (f *imageFlags) prepare(ctx context.Context, progress func(string, ...any)) (*oci.Image, error) {
	dir, err := imageCacheDir()
	if err != nil {
		return nil, err
	}
	im, err := oci.Prepare(ctx, f.image, oci.Options{Arch: f.arch, Dir: dir, Pull: oci.Pull(f.pull),
		Progress: func(msg string) { progress("image %s: %s", f.image, msg) }})
	if err != nil {
		return nil, err
	}
	how := "cached"
	if im.Converted {
		how = "converted"
	}
	progress("image %s: %s linux/%s %s", f.image, im.Digest, im.Arch, how)
	return im, nil
}

// execSettings are the environment, working directory and user of a
// command run through the agent.
type execSettings struct {
	Env       []string
	Dir, User string
}

// command returns what boot runs: args, or the image's Entrypoint and
// Cmd as docker run does, with the image's Env, WorkingDir and User
// under the explicit -e, -w and -u.
func (f *imageFlags) command(args []string, im *oci.Image) ([]string, execSettings, error) {
	var s execSettings
	var cfg oci.Config
	if im != nil {
		cfg = im.Config
	}
	argv := args
	if im != nil {
		argv = cfg.Argv(args)
	}
	if len(argv) == 0 {
		return nil, s, fmt.Errorf("image %s has no Entrypoint or Cmd: give a COMMAND", f.image)
	}
	s.Env = mergeEnv(cfg.Env, f.env)
	s.Dir = f.dir
	if s.Dir == "" {
		s.Dir = cfg.WorkingDir
	}
	s.User = f.user
	if s.User == "" {
		s.User = cfg.User
	}
	return argv, s, nil
}

// mergeEnv is base with each of over (KEY=VALUE, or KEY for this
// process's value) replacing the entry of the same key or added.
func mergeEnv(base, over []string) []string {
	out := append([]string(nil), base...)
	for _, kv := range over {
		k, _, ok := strings.Cut(kv, "=")
		if !ok {
			kv = k + "=" + os.Getenv(k)
		}
		replaced := false
		for i, b := range out {
			if bk, _, _ := strings.Cut(b, "="); bk == k {
				out[i], replaced = kv, true
			}
		}
		if !replaced {
			out = append(out, kv)
		}
	}
	return out
}

func cmdImages(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("images", "[-rm REF|DIGEST|all]", stderr)
	rm := fs.String("rm", "", "remove the cached images converted from REF or that tag REF last named, of DIGEST (or a prefix of at least 12 hex digits), or all")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return errUsage
	}
	dir, err := imageCacheDir()
	if err != nil {
		return err
	}
	if *rm != "" {
		n, err := oci.Remove(dir, *rm)
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("no cached image matches %q", *rm)
		}
		fmt.Fprintf(stdout, "removed %d image(s)\n", n)
		return nil
	}
	imgs, err := oci.List(dir)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "REFERENCE\tARCH\tDIGEST\tSIZE\tROOT")
	// A row for each reference that names an image, as docker images
	// has a row for each tag.
	for _, im := range imgs {
		short := strings.TrimPrefix(im.Digest, "sha256:")
		for _, ref := range append([]string{im.Ref}, im.Tags...) {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%.1f MB\t%s\n", ref, im.Arch, short[:min(12, len(short))], float64(im.Size)/1e6, im.Root)
		}
	}
	return tw.Flush()
}
