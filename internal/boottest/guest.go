// Package boottest boots the bundled kernels, busybox and agents under
// QEMU and drives the agent, for both arches whatever the host arch: the
// boot tests and the boot-time benchmark live here.
//
// A guest is the embedded kernel, the agent initramfs built by the
// initramfs package from the embedded busybox and agent, a squashfs root
// image made from busybox (plus a vsock client for the in-guest vsock
// test), an ext4 data disk and a virtio-net device. The host reaches the
// agent through a virtio-serial port backed by a Unix socket.
package boottest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/supermachine-go/supermachine-kernel/agent"
	"github.com/supermachine-go/supermachine-kernel/initramfs"
	"github.com/supermachine-go/supermachine-kernel/internal/extract"
	"github.com/supermachine-go/supermachine-kernel/internal/guestassets"
	"github.com/supermachine-go/supermachine-kernel/internal/qemu"
	"github.com/supermachine-go/supermachine-kernel/internal/rootfs"
)

// Images are the files a guest boots from.
type Images struct {
	Arch    string
	Kernel  string
	Initrd  string
	Root    string // squashfs root image
	Data    string // ext4 data disk
	Busybox []byte
	Agent   []byte
}

// MakeImages writes the boot files for arch into dir. vsockClient, if not
// empty, is a static binary put at /bin/vsockexec in the root image.
// squashfsComp is the root image's compression (see rootfs.Squashfs); empty means xz
// on amd64 and zstd on arm64, so the boot tests prove both.
func MakeImages(ctx context.Context, arch, dir string, vsockClient []byte, squashfsComp string) (*Images, error) {
	set, err := guestassets.For(arch)
	if err != nil {
		return nil, err
	}
	kb, bb, ab := set.Kernel, set.Busybox, set.Agent
	im := &Images{Arch: arch,
		Kernel: filepath.Join(dir, "kernel"), Initrd: filepath.Join(dir, "initrd.cpio"),
		Root: filepath.Join(dir, "root.squashfs"), Data: filepath.Join(dir, "data.ext4")}
	var kernel []byte
	if kernel, err = extract.Decode(kb); err != nil {
		return nil, fmt.Errorf("%s kernel: %w", arch, err)
	}
	if im.Busybox, err = extract.Decode(bb); err != nil {
		return nil, fmt.Errorf("%s busybox: %w", arch, err)
	}
	if im.Agent, err = extract.Decode(ab); err != nil {
		return nil, fmt.Errorf("%s agent: %w", arch, err)
	}
	if err := os.WriteFile(im.Kernel, kernel, 0o644); err != nil {
		return nil, err
	}
	// Uncompressed: the kernel copies it instead of inflating it, which
	// is faster to boot; its pages are freed after switch_root.
	initrd, err := initramfs.Build(initramfs.Options{Busybox: im.Busybox, Agent: im.Agent})
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(im.Initrd, initrd, 0o644); err != nil {
		return nil, err
	}

	tree := filepath.Join(dir, "root")
	files := map[string][]byte{"etc/marker": []byte("supermachine squashfs root\n")}
	if len(vsockClient) > 0 {
		files["bin/vsockexec"] = vsockClient
	}
	if err := rootfs.WriteBusyboxTree(tree, im.Busybox, files); err != nil {
		return nil, err
	}
	// The root image: xz on amd64, zstd on arm64 (the workload tests
	// mount gzip, lz4 and lzo images).
	comp := "xz"
	if arch == "arm64" {
		comp = "zstd"
	}
	if squashfsComp != "" {
		comp = squashfsComp
	}
	if err := rootfs.Squashfs(ctx, tree, im.Root, comp); err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(data, "hello.txt"), []byte("hello from ext4\n"), 0o644); err != nil {
		return nil, err
	}
	if err := run(ctx, "mkfs.ext4", "-q", "-F", "-d", data, "-E", "root_owner=0:0", im.Data, "16M"); err != nil {
		return nil, err
	}
	return im, nil
}

func run(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

// Guest is a booted guest with a connected agent client.
type Guest struct {
	VM     *qemu.VM
	Client *agent.Client
	// Ready is the host time from starting QEMU to the agent's handshake.
	Ready time.Duration
}

// Boot starts a guest from im and connects to its agent over the
// virtio-serial port. extraCmdline is appended to the kernel command line.
func Boot(ctx context.Context, im *Images, dir string, net bool, extraCmdline ...string) (*Guest, error) {
	return BootConfig(ctx, Config(im, dir, net, extraCmdline...))
}

// Config is the QEMU configuration Boot uses for im: the default
// machine shape, the root image as /dev/vda, the data disk as /dev/vdb,
// the agent's virtio-serial port on dir/agent.sock.
func Config(im *Images, dir string, net bool, extraCmdline ...string) qemu.Config {
	return qemu.Config{
		Arch: im.Arch, Kernel: im.Kernel, Initrd: im.Initrd, Append: extraCmdline,
		Disks:       []qemu.Disk{{Path: im.Root, ReadOnly: true}, {Path: im.Data}},
		AgentSocket: filepath.Join(dir, "agent.sock"), Net: net,
	}
}

// BootConfig starts a guest from cfg, which has an AgentSocket, and
// connects to its agent.
func BootConfig(ctx context.Context, cfg qemu.Config) (*Guest, error) {
	vm, c, err := qemu.Boot(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return &Guest{VM: vm, Client: c, Ready: time.Since(vm.Started())}, nil
}

// Shell runs a busybox shell command in the guest and returns its stdout.
func (g *Guest) Shell(ctx context.Context, script string) (string, error) {
	cmd := g.Client.Command(ctx, "sh", "-c", script)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%q: %w: %s", script, err, errb.String())
	}
	return out.String(), nil
}

// Close powers the guest off if it still runs and waits for QEMU.
func (g *Guest) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	g.Client.PowerOff(ctx)
	g.Client.Close()
	if g.VM.Wait(ctx) != nil {
		g.VM.Kill()
	}
}

var buildMu sync.Mutex

// BuildVsockClient cross-compiles the vsockexec command for arch.
func BuildVsockClient(ctx context.Context, arch, dir string) ([]byte, error) {
	buildMu.Lock()
	defer buildMu.Unlock()
	out := filepath.Join(dir, "vsockexec-"+arch)
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, "./vsockexec")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build vsockexec: %w\n%s", err, b)
	}
	return os.ReadFile(out)
}
