// Package initramfs writes the agent initramfs: a newc cpio archive with
// the bundled static busybox, the supermachine agent and a generated /init
// that mounts the root image under a writable overlay and switches to it
// with the agent as PID 1.
//
// The archive is deterministic: the same options and binaries give the
// same bytes (fixed order, owners, modes and mtimes).
//
// # What /init does
//
//  1. mounts devtmpfs on /dev, /proc and /sys;
//  2. mounts the read-only root image (default /dev/vda, squashfs) on a
//     lower directory, and an overlay with a tmpfs upper (or a writable
//     block device) on the new root;
//  3. mounts a tmpfs on the new root's /run and copies the agent to
//     /run/supermachine/supermachine-agent, where it survives switch_root
//     without touching the container's files;
//  4. mounts the extra mounts, moves /dev, /proc and /sys into the new root
//     and runs exec switch_root into it, with the agent as PID 1.
//
// On any failure it prints "supermachine-init: FATAL: <what failed>" to the
// console and ends the guest: power off where the platform supports it
// (arm64 PSCI, ACPI), else reboot, which a VMM without ACPI treats as exit.
//
// # Kernel command line
//
// The options baked in by [Options] are defaults; these kernel command line
// parameters override them:
//
//	supermachine.root=DEV            root image device (default /dev/vda)
//	supermachine.rootfstype=TYPE     squashfs (default), ext4, or virtiofs or 9p
//	                                 (then supermachine.root is the share's tag)
//	supermachine.overlay_size=SIZE   tmpfs upper size, e.g. 256m (default 50%)
//	supermachine.upper=DEV           writable block device as the upper layer
//	supermachine.upperfstype=TYPE    its filesystem (default ext4)
//	supermachine.rootwait=SECONDS    how long to wait for devices (default 5)
//	supermachine.mount=SRC:DST:TYPE[:OPTS]  an extra mount (repeatable)
//
// The agent reads its own parameters (supermachine.vsock_port,
// supermachine.serial_port, supermachine.allow_any_cid, supermachine.debug)
// from the command line too; see the agent package.
package initramfs

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/template"
	"time"

	"github.com/cavaliergopher/cpio"
)

//go:embed init.sh
var initScript string

var initTmpl = template.Must(template.New("init").Parse(initScript))

// Mount is an extra filesystem mounted in the new root before the agent
// starts.
type Mount struct {
	Source  string // device or filesystem source, e.g. /dev/vdb or a virtio-fs tag
	Target  string // absolute path inside the new root
	FSType  string // e.g. ext4, virtiofs, tmpfs; bind: Source is a path in the initramfs, e.g. /lower/DIR (a directory of the root image)
	Options string // mount -o options, optional
}

// Options configure the initramfs. The zero value is a working default:
// squashfs root on /dev/vda under a tmpfs overlay.
type Options struct {
	// Busybox and Agent are the static binaries to include. Required;
	// see the kernel package for the bundled ones (Build in this package's
	// callers usually pass kernel.Busybox.Bytes() and kernel.Agent.Bytes()).
	Busybox, Agent []byte

	Root        string  // root image device; default /dev/vda
	RootFSType  string  // squashfs (default), ext4, or virtiofs or 9p (Root is then the tag)
	OverlaySize string  // tmpfs upper size (tmpfs size= syntax); default 50%
	Upper       string  // writable block device for the upper layer; default: tmpfs
	UpperFSType string  // filesystem of Upper; default ext4
	RootWait    int     // seconds to wait for devices; default 5
	Mounts      []Mount // extra mounts
	// AgentArgs are passed to the agent, e.g. {"-vsock-port", "1024"}.
	AgentArgs []string
	// Gzip compresses the archive (the kernel has CONFIG_RD_GZIP).
	Gzip bool
}

// Applets are the busybox applets /init uses; each gets a /bin symlink.
var Applets = []string{"sh", "mount", "mkdir", "cp", "cat", "echo", "sleep", "uname", "poweroff", "reboot", "switch_root"}

// ErrBadOption is returned (wrapped) for an option that cannot be used.
var ErrBadOption = errors.New("initramfs: bad option")

func (o *Options) withDefaults() (Options, error) {
	c := *o
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.Root, "/dev/vda")
	def(&c.RootFSType, "squashfs")
	def(&c.OverlaySize, "50%")
	def(&c.UpperFSType, "ext4")
	if c.RootWait == 0 {
		c.RootWait = 5
	}
	if len(c.Busybox) == 0 {
		return c, fmt.Errorf("%w: no busybox binary", ErrBadOption)
	}
	if len(c.Agent) == 0 {
		return c, fmt.Errorf("%w: no agent binary", ErrBadOption)
	}
	if c.RootWait < 0 {
		return c, fmt.Errorf("%w: RootWait %d is negative", ErrBadOption, c.RootWait)
	}
	for name, v := range map[string]string{"Root": c.Root, "RootFSType": c.RootFSType, "OverlaySize": c.OverlaySize, "Upper": c.Upper, "UpperFSType": c.UpperFSType} {
		if err := shellWord(name, v); err != nil {
			return c, err
		}
	}
	for _, m := range c.Mounts {
		for name, v := range map[string]string{"Source": m.Source, "Target": m.Target, "FSType": m.FSType, "Options": m.Options} {
			if err := shellWord("Mount."+name, v); err != nil {
				return c, err
			}
			if name != "Options" && strings.Contains(v, ":") {
				return c, fmt.Errorf("%w: Mount.%s %q contains ':'", ErrBadOption, name, v)
			}
		}
		if m.Source == "" || m.FSType == "" || !strings.HasPrefix(m.Target, "/") {
			return c, fmt.Errorf("%w: mount %+v needs a Source, an FSType and an absolute Target", ErrBadOption, m)
		}
	}
	for _, a := range c.AgentArgs {
		if err := shellWord("AgentArgs", a); err != nil {
			return c, err
		}
	}
	return c, nil
}

// shellWord refuses what cannot go verbatim into the generated script.
func shellWord(name, v string) error {
	if strings.ContainsAny(v, "'\"\\$` \t\n;&|<>(){}*?[]") {
		return fmt.Errorf("%w: %s %q contains a space, quote or shell metacharacter", ErrBadOption, name, v)
	}
	return nil
}

// Script returns the /init script the options produce.
func Script(o Options) (string, error) {
	c, err := o.withDefaults()
	if err != nil {
		return "", err
	}
	var mounts []string
	for _, m := range c.Mounts {
		s := m.Source + ":" + m.Target + ":" + m.FSType
		if m.Options != "" {
			s += ":" + m.Options
		}
		mounts = append(mounts, s)
	}
	var b strings.Builder
	err = initTmpl.Execute(&b, map[string]any{
		"Root": c.Root, "RootFSType": c.RootFSType, "OverlaySize": c.OverlaySize,
		"Upper": c.Upper, "UpperFSType": c.UpperFSType, "RootWait": c.RootWait,
		"Mounts": strings.Join(mounts, " "), "AgentArgs": strings.Join(c.AgentArgs, " "),
	})
	return b.String(), err
}

// layoutVersion names the archive layout writeCPIO produces; change it
// whenever the layout changes, so ContentKey changes with it.
const layoutVersion = "supermachine-initramfs newc v1"

// ContentKey returns a hash (hex SHA-256) that identifies the bytes Build
// would return for o, without building them, for caching a generated
// initramfs by content. It covers the /init script the options produce,
// the archive layout, the applet links and compression; the binaries are
// given by their SHA-256 sums (o.Busybox and o.Agent are not read).
func ContentKey(o Options, busyboxSHA256, agentSHA256 string) (string, error) {
	if busyboxSHA256 == "" || agentSHA256 == "" {
		return "", fmt.Errorf("%w: ContentKey needs the SHA-256 of busybox and of the agent", ErrBadOption)
	}
	// Script checks the binaries are present; their bytes do not enter
	// the script.
	o.Busybox, o.Agent = []byte{0}, []byte{0}
	script, err := Script(o)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\napplets %s\ngzip %t\nbusybox %s\nagent %s\n%s",
		layoutVersion, strings.Join(Applets, ","), o.Gzip, busyboxSHA256, agentSHA256, script)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Write writes the initramfs to w.
func Write(w io.Writer, o Options) error {
	script, err := Script(o)
	if err != nil {
		return err
	}
	if o.Gzip {
		// Fixed header (no name, no mtime) keeps the bytes reproducible.
		zw, err := gzip.NewWriterLevel(w, gzip.BestSpeed)
		if err != nil {
			return err
		}
		if err := writeCPIO(zw, o, script); err != nil {
			return err
		}
		return zw.Close()
	}
	return writeCPIO(w, o, script)
}

// Build returns the initramfs bytes.
func Build(o Options) ([]byte, error) {
	var b bytes.Buffer
	if err := Write(&b, o); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// epoch is the mtime of every entry.
var epoch = time.Unix(0, 0)

func writeCPIO(w io.Writer, o Options, script string) error {
	cw := cpio.NewWriter(w)
	ino := int64(0)
	entry := func(name string, mode cpio.FileMode, data []byte, link string) error {
		ino++
		h := &cpio.Header{Name: name, Mode: mode, ModTime: epoch, Inode: ino, Links: 1, Linkname: link}
		if mode.IsDir() {
			h.Links = 2
		}
		switch {
		case link != "":
			h.Size = int64(len(link))
		default:
			h.Size = int64(len(data))
		}
		if err := cw.WriteHeader(h); err != nil {
			return fmt.Errorf("initramfs: %s: %w", name, err)
		}
		if link != "" {
			data = []byte(link)
		}
		if _, err := cw.Write(data); err != nil {
			return fmt.Errorf("initramfs: %s: %w", name, err)
		}
		return nil
	}
	for _, d := range []string{"bin", "dev", "proc", "sys", "lower", "rw", "newroot"} {
		if err := entry(d, cpio.TypeDir|0o755, nil, ""); err != nil {
			return err
		}
	}
	if err := entry("bin/busybox", cpio.TypeReg|0o755, o.Busybox, ""); err != nil {
		return err
	}
	for _, a := range Applets {
		if err := entry("bin/"+a, cpio.TypeSymlink|0o777, nil, "busybox"); err != nil {
			return err
		}
	}
	if err := entry("bin/supermachine-agent", cpio.TypeReg|0o755, o.Agent, ""); err != nil {
		return err
	}
	if err := entry("init", cpio.TypeReg|0o755, []byte(script), ""); err != nil {
		return err
	}
	return cw.Close()
}
