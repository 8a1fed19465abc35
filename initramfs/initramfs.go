// Package initramfs writes the agent initramfs: a newc cpio archive whose
// /init is the supermachine agent itself, with its settings as a small text
// file (supermachine/init.conf) and the bundled static busybox as the
// toolbox and rescue shell. No shell script runs at boot: the agent, as
// PID 1, mounts the root image under a writable overlay, switches root to
// it and serves.
//
// The archive is deterministic: the same options and binaries give the
// same bytes (fixed order, owners, modes and mtimes).
//
// # What the init does
//
//  1. mounts devtmpfs on /dev, /proc and /sys;
//  2. reads its settings: the archive's, then those of an appended
//     segment ([Segment]), then the kernel command line;
//  3. waits for the root device (supermachine.rootwait seconds) and mounts
//     the root image (default /dev/vda, squashfs) read-only on a lower
//     directory, or a virtio-fs or 9p share read-write, and an overlay
//     with a tmpfs upper (or a writable block device) on the new root;
//  4. mounts the extra mounts, moves /dev, /proc and /sys into the new
//     root, deletes the initramfs's files and switches root (MS_MOVE and
//     chroot, as switch_root does); the same process then serves as the
//     agent, as PID 1.
//
// On any failure it prints "supermachine-init: FATAL: <what failed>" on
// the console and ends the guest: power off where the platform supports
// it (arm64 PSCI, ACPI), else reboot, which a VMM without ACPI treats as
// exit. With supermachine.rescue=1 it runs a busybox shell on the console
// first and powers off when the shell exits.
//
// # Kernel command line
//
// The options baked in by [Options] are defaults; these kernel command
// line parameters override them, each one word (quote a value with blanks
// as the kernel does: "supermachine.mount=/a b:/c:bind"):
//
//	supermachine.root=DEV            root image device (default /dev/vda)
//	supermachine.rootfstype=TYPE     squashfs (default), ext4, or virtiofs or 9p
//	                                 (then supermachine.root is the share's tag)
//	supermachine.rootoptions=OPTS    mount -o options of the root, e.g.
//	                                 trans=virtio,msize=524288 for 9p
//	supermachine.overlay_size=SIZE   tmpfs upper size, e.g. 256m (default 50%)
//	supermachine.upper=DEV           writable block device as the upper layer
//	supermachine.upperfstype=TYPE    its filesystem (default ext4)
//	supermachine.rootwait=SECONDS    how long to wait for devices (default 5)
//	supermachine.mount=SRC:DST:TYPE[:OPTS]  an extra mount (repeatable);
//	                                 TYPE bind bind-mounts SRC, a path of the
//	                                 initramfs such as /lower/DIR (the root image's DIR)
//	supermachine.rescue=1            a busybox shell on the console if the init fails
//
// A malformed value (a mount without a target, a size that does not
// parse) fails the boot with a message naming the parameter. Values the
// command line cannot carry (a path with a colon, a quote) go in a
// [Segment] instead. The agent reads its own parameters
// (supermachine.vsock_port, supermachine.serial_port,
// supermachine.allow_any_cid, supermachine.debug) from the command line
// too and reports unknown supermachine.* parameters on the console; see
// the agent package.
package initramfs

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/cavaliergopher/cpio"

	"github.com/supermachine-go/supermachine-kernel/internal/initconfig"
)

// Mount is an extra filesystem mounted in the new root before the agent
// starts.
type Mount struct {
	Source  string // device or filesystem source, e.g. /dev/vdb or a virtio-fs tag
	Target  string // absolute path inside the new root
	FSType  string // e.g. ext4, virtiofs, tmpfs; bind: Source is a path in the initramfs, e.g. /lower/DIR (a directory of the root image)
	Options string // mount -o options, optional
}

// Settings are the init's settings: baked into the initramfs through
// [Options], or given for one boot through [Segment]. Empty fields keep
// the earlier value (the built-in default, or the archive's).
type Settings struct {
	Root        string  // root image device; default /dev/vda
	RootFSType  string  // squashfs (default), ext4, or virtiofs or 9p (Root is then the tag)
	RootOptions string  // mount -o options of the root, e.g. a 9p root's msize; optional
	OverlaySize string  // tmpfs upper size (tmpfs size= syntax); default 50%
	Upper       string  // writable block device for the upper layer; default: tmpfs
	UpperFSType string  // filesystem of Upper; default ext4
	RootWait    int     // seconds to wait for devices; default 5
	Mounts      []Mount // extra mounts, after those of the archive
	// AgentArgs are passed to the agent, e.g. {"-vsock-port", "1024"};
	// they follow those of the archive.
	AgentArgs []string
	// Rescue runs a busybox shell on the console when the init fails,
	// before the guest powers off (supermachine.rescue=1).
	Rescue bool
}

// Options configure the initramfs. The zero value is a working default:
// squashfs root on /dev/vda under a tmpfs overlay.
type Options struct {
	// Busybox and Agent are the static binaries to include. Required;
	// see the kernel package for the bundled ones (Build in this package's
	// callers usually pass kernel.Busybox.Bytes() and kernel.Agent.Bytes()).
	Busybox, Agent []byte
	Settings
	// Gzip compresses the archive (the kernel has CONFIG_RD_GZIP).
	Gzip bool
}

// Applets are the busybox applets linked in /bin of the initramfs, for
// the rescue shell.
var Applets = []string{"sh", "ash", "cat", "cp", "dmesg", "echo", "grep", "ls", "mkdir", "mount", "umount", "mv", "ps", "rm", "sleep", "poweroff", "reboot", "switch_root", "uname", "vi"}

// ErrBadOption is returned (wrapped) for an option that cannot be used;
// errors about a setting's value also match [ErrBadSetting].
var ErrBadOption = errors.New("initramfs: bad option")

// ErrBadSetting matches errors about a setting's value.
var ErrBadSetting = initconfig.ErrBadSetting

// config is s as the init's settings file holds it.
func (s Settings) config() (initconfig.Config, error) {
	c := initconfig.Config{
		Root: s.Root, RootFSType: s.RootFSType, RootOptions: s.RootOptions, OverlaySize: s.OverlaySize,
		Upper: s.Upper, UpperFSType: s.UpperFSType, RootWait: s.RootWait,
		AgentArgs: s.AgentArgs, Rescue: s.Rescue,
	}
	for _, m := range s.Mounts {
		c.Mounts = append(c.Mounts, initconfig.Mount{Source: m.Source, Target: m.Target, FSType: m.FSType, Options: m.Options})
	}
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("%w: %w", ErrBadOption, err)
	}
	return c, nil
}

// settingsFile returns the settings file for s.
func (s Settings) settingsFile() ([]byte, error) {
	c, err := s.config()
	if err != nil {
		return nil, err
	}
	return initconfig.Encode(c)
}

// layoutVersion names the archive layout writeCPIO produces; change it
// whenever the layout changes, so ContentKey changes with it.
const layoutVersion = "supermachine-initramfs newc v2, agent as /init"

// ContentKey returns a hash (hex SHA-256) that identifies the bytes Build
// would return for o, without building them, for caching a generated
// initramfs by content. It covers the settings file, the archive layout,
// the applet links and compression; the binaries are given by their
// SHA-256 sums (o.Busybox and o.Agent are not read).
func ContentKey(o Options, busyboxSHA256, agentSHA256 string) (string, error) {
	if busyboxSHA256 == "" || agentSHA256 == "" {
		return "", fmt.Errorf("%w: ContentKey needs the SHA-256 of busybox and of the agent", ErrBadOption)
	}
	settings, err := o.settingsFile()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\napplets %s\ngzip %t\nbusybox %s\nagent %s\n%s",
		layoutVersion, strings.Join(Applets, ","), o.Gzip, busyboxSHA256, agentSHA256, settings)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Write writes the initramfs to w.
func Write(w io.Writer, o Options) error {
	if len(o.Busybox) == 0 {
		return fmt.Errorf("%w: no busybox binary", ErrBadOption)
	}
	if len(o.Agent) == 0 {
		return fmt.Errorf("%w: no agent binary", ErrBadOption)
	}
	settings, err := o.settingsFile()
	if err != nil {
		return err
	}
	if o.Gzip {
		// Fixed header (no name, no mtime) keeps the bytes reproducible.
		zw, err := gzip.NewWriterLevel(w, gzip.BestSpeed)
		if err != nil {
			return err
		}
		if err := writeCPIO(zw, o, settings); err != nil {
			return err
		}
		return zw.Close()
	}
	return writeCPIO(w, o, settings)
}

// Build returns the initramfs bytes.
func Build(o Options) ([]byte, error) {
	var b bytes.Buffer
	if err := Write(&b, o); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Segment returns an initramfs segment carrying settings for one boot:
// an uncompressed newc cpio archive with the per-boot settings file, to
// append to an initramfs that Build made (the kernel unpacks concatenated
// archives in order). Its settings apply over the archive's and under the
// kernel command line's; its mounts and agent arguments are added to the
// archive's. Use it for values the command line cannot carry, such as
// paths with blanks, colons or quotes.
func Segment(s Settings) ([]byte, error) {
	settings, err := s.settingsFile()
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	w := newArchive(&b)
	w.entry(initconfig.Dir, cpio.TypeDir|0o755, nil, "")
	w.entry(initconfig.BootFile, cpio.TypeReg|0o644, settings, "")
	if err := w.close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// epoch is the mtime of every entry.
var epoch = time.Unix(0, 0)

// archive writes entries with fixed owners, mtimes and inode numbers,
// keeping the first error.
type archive struct {
	cw  *cpio.Writer
	ino int64
	err error
}

func newArchive(w io.Writer) *archive { return &archive{cw: cpio.NewWriter(w)} }

func (a *archive) entry(name string, mode cpio.FileMode, data []byte, link string) {
	if a.err != nil {
		return
	}
	a.ino++
	h := &cpio.Header{Name: name, Mode: mode, ModTime: epoch, Inode: a.ino, Links: 1, Linkname: link}
	if mode.IsDir() {
		h.Links = 2
	}
	if link != "" {
		data = []byte(link)
	}
	h.Size = int64(len(data))
	if err := a.cw.WriteHeader(h); err != nil {
		a.err = fmt.Errorf("initramfs: %s: %w", name, err)
		return
	}
	if _, err := a.cw.Write(data); err != nil {
		a.err = fmt.Errorf("initramfs: %s: %w", name, err)
	}
}

func (a *archive) close() error {
	if a.err != nil {
		return a.err
	}
	return a.cw.Close()
}

func writeCPIO(w io.Writer, o Options, settings []byte) error {
	a := newArchive(w)
	for _, d := range []string{"bin", "dev", "proc", "sys", "lower", "rw", "newroot", initconfig.Dir} {
		a.entry(d, cpio.TypeDir|0o755, nil, "")
	}
	a.entry("bin/busybox", cpio.TypeReg|0o755, o.Busybox, "")
	for _, ap := range Applets {
		a.entry("bin/"+ap, cpio.TypeSymlink|0o777, nil, "busybox")
	}
	a.entry(initconfig.ArchiveFile, cpio.TypeReg|0o644, settings, "")
	a.entry("init", cpio.TypeReg|0o755, o.Agent, "")
	return a.close()
}
