package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/supermachine-go/supermachine-kernel/initramfs"
	"github.com/supermachine-go/supermachine-kernel/internal/atomicfile"
	"github.com/supermachine-go/supermachine-kernel/internal/initconfig"
	"github.com/supermachine-go/supermachine-kernel/kernel"
)

func cmdInfo(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("info", "[-json]", stderr)
	asJSON := fs.Bool("json", false, "print kernel.Manifest() as JSON: the schema of kernel.Info (extracted file names, modes, flat xz fields), not that of the arch module's manifest.json")
	if err := parse(fs, args); err != nil {
		return err
	}
	m := kernel.Manifest()
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(m)
	}
	fmt.Fprintf(stdout, "arch: %s\n\n", m.Arch)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ASSET\tVERSION\tFORMAT\tSIZE\tXZ SIZE\tSHA-256")
	for _, a := range []kernel.AssetInfo{m.Kernel, m.Busybox, m.Agent} {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\n", a.Name, a.Version, a.Format, a.Size, a.XZSize, a.SHA256)
	}
	if v := m.Vmlinux; v != nil {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", v.Name, v.Version, v.Format, v.Size, "derived", v.SHA256)
	}
	tw.Flush()
	if m.Vmlinux != nil {
		fmt.Fprintln(stdout, "\nvmlinux: decoded on demand from the bzImage's LZ4 payload; for VMMs that load an ELF kernel (Firecracker)")
	} else {
		fmt.Fprintln(stdout, "\nthe Image is uncompressed: Firecracker, Cloud Hypervisor and Virtualization.framework boot it as is")
	}
	fmt.Fprintf(stdout, "kernel config SHA-256: %s\nkernel source: %s\n", m.Kernel.ConfigSHA256, m.Kernel.Source)
	return nil
}

func cmdExtract(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("extract", "[DIR]", stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		fs.Usage()
		return errUsage
	}
	var paths kernel.Paths
	var err error
	if fs.NArg() == 1 {
		dir := fs.Arg(0)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		paths, err = kernel.ExtractAll(ctx, dir)
	} else {
		fmt.Fprintln(stderr, "extracting into the cache (decoding the first time only)...")
		paths, err = kernel.CacheAll(ctx)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "kernel  %s\nbusybox %s\nagent   %s\n", paths.Kernel, paths.Busybox, paths.Agent)
	if kernel.Vmlinux == kernel.Kernel {
		return nil // arm64: the Image is already uncompressed
	}
	var vmlinux string
	if fs.NArg() == 1 {
		vmlinux = filepath.Join(fs.Arg(0), kernel.Vmlinux.File())
		err = kernel.Vmlinux.ExtractTo(vmlinux)
	} else {
		vmlinux, err = kernel.Vmlinux.Cached(ctx)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "vmlinux %s\n", vmlinux)
	return nil
}

// initramfsFlags registers the initramfs options on fs.
func initramfsFlags(fs *flag.FlagSet, o *initramfs.Options, mounts, agentArgs *multiFlag) {
	fs.StringVar(&o.Root, "root-device", "/dev/vda", "root image device in the guest")
	fs.StringVar(&o.RootFSType, "rootfstype", "", "root image filesystem: squashfs or ext4 (default squashfs; boot detects it)")
	fs.StringVar(&o.RootOptions, "rootoptions", "", "mount options of the root image (mount -o syntax)")
	fs.StringVar(&o.OverlaySize, "overlay-size", "50%", "size of the tmpfs upper layer (tmpfs size= syntax)")
	fs.StringVar(&o.Upper, "upper", "", "writable block device for the upper layer instead of tmpfs")
	fs.StringVar(&o.UpperFSType, "upperfstype", "ext4", "filesystem of -upper")
	fs.IntVar(&o.RootWait, "rootwait", 5, "seconds to wait for devices")
	fs.Var(mounts, "mount", "extra mount SRC:DST:TYPE[:OPTIONS] (repeatable)")
	fs.Var(agentArgs, "agent-arg", "argument for the agent, e.g. -agent-arg=-debug (repeatable)")
}

func parseMounts(specs []string) ([]initramfs.Mount, error) {
	var ms []initramfs.Mount
	for _, s := range specs {
		m, err := initconfig.ParseMount(s)
		if err != nil {
			return nil, fmt.Errorf("-mount: %w", err)
		}
		ms = append(ms, initramfs.Mount{Source: m.Source, Target: m.Target, FSType: m.FSType, Options: m.Options})
	}
	return ms, nil
}

func cmdInitramfs(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("initramfs", "-o FILE [flags]", stderr)
	var o initramfs.Options
	var mounts, agentArgs multiFlag
	initramfsFlags(fs, &o, &mounts, &agentArgs)
	out := fs.String("o", "", "output file (required)")
	fs.BoolVar(&o.Gzip, "gzip", false, "gzip the archive")
	fs.BoolVar(&o.Rescue, "rescue", false, "a busybox shell on the guest console when the init fails, before the guest powers off")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *out == "" || fs.NArg() > 0 {
		fs.Usage()
		return errUsage
	}
	b, err := buildInitramfs(o, mounts, agentArgs)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(context.Background(), *out, b, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: %d bytes\n", *out, len(b))
	return nil
}

func buildInitramfs(o initramfs.Options, mounts, agentArgs []string) ([]byte, error) {
	var err error
	if o.Mounts, err = parseMounts(mounts); err != nil {
		return nil, err
	}
	o.AgentArgs = agentArgs
	if o.Busybox, err = kernel.Busybox.Bytes(); err != nil {
		return nil, err
	}
	if o.Agent, err = kernel.Agent.Bytes(); err != nil {
		return nil, err
	}
	return initramfs.Build(o)
}
