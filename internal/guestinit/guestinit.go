//go:build linux

// Package guestinit is the init stage of the agent: as PID 1 of the agent
// initramfs it mounts /dev, /proc and /sys, reads its settings (package
// initconfig), mounts the root image under a writable overlay with the
// extra mounts, moves /dev, /proc and /sys into it and switches root to
// it, freeing the initramfs, so that the same process then serves as the
// agent. Every step is a system call with an error that says what failed;
// no shell runs, and nothing a user passes is interpreted by one.
package guestinit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/supermachine-go/supermachine-kernel/internal/initconfig"
	"github.com/supermachine-go/supermachine-kernel/internal/poll"
)

// Directories of the initramfs the init mounts on (they come with the
// archive).
const (
	lowerDir   = "/lower"   // the root image
	rwDir      = "/rw"      // the upper layer's filesystem
	newRootDir = "/newroot" // the overlay, the root to switch to
)

// LogPrefix starts every line the init stage prints on the console.
const LogPrefix = "supermachine-init: "

// InInitramfs reports whether the process is the init of an agent
// initramfs: PID 1, with the settings file the initramfs package writes.
func InInitramfs() bool {
	if os.Getpid() != 1 {
		return false
	}
	_, err := os.Stat("/" + initconfig.ArchiveFile)
	return err == nil
}

// earlyMounts are what the init needs before anything else; they move
// into the new root.
var earlyMounts = []struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
}{
	{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"},
	{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
}

// MountEarly mounts devtmpfs on /dev, /proc and /sys, and makes
// /dev/console the process's standard input, output and error if those
// are not open (the kernel opens them when it finds /dev/console).
func MountEarly() error {
	for _, m := range earlyMounts {
		if err := mount(m.source, m.target, m.fstype, m.flags, m.data); err != nil && !errors.Is(err, unix.EBUSY) {
			return err
		}
	}
	if _, err := unix.FcntlInt(2, unix.F_GETFD, 0); err != nil {
		fd, err := unix.Open("/dev/console", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
		if err != nil {
			return os.NewSyscallError("open /dev/console", err)
		}
		for i := 0; i < 3; i++ {
			unix.Dup3(fd, i, 0)
		}
		if fd > 2 {
			unix.Close(fd)
		}
	}
	return nil
}

// Load returns the init's settings: the archive's settings file, then a
// per-boot settings file from an appended initramfs segment if there is
// one, then the supermachine.* parameters of cmdline, each applied over
// the last (mounts add up), over the defaults.
func Load(cmdline string) (initconfig.Config, error) {
	return load("/", cmdline)
}

// load is Load with the settings files under root.
func load(root, cmdline string) (initconfig.Config, error) {
	cfg := initconfig.Defaults()
	for _, f := range []string{initconfig.ArchiveFile, initconfig.BootFile} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if errors.Is(err, os.ErrNotExist) && f == initconfig.BootFile {
			continue
		}
		if err != nil {
			return cfg, fmt.Errorf("settings: %w", err)
		}
		c, err := initconfig.Decode(b)
		if err != nil {
			return cfg, fmt.Errorf("settings /%s: %w", f, err)
		}
		cfg.Merge(c)
	}
	c, err := initconfig.FromCmdline(initconfig.SplitCmdline(cmdline))
	if err != nil {
		return cfg, err
	}
	cfg.Merge(c)
	return cfg, nil
}

// SetUp mounts the root and the overlay, the extra mounts, moves /dev,
// /proc and /sys into the new root and switches to it. It returns
// freeInitramfs, which deletes the initramfs's files (they hold RAM) and
// can run later, when the agent is serving.
func SetUp(ctx context.Context, cfg initconfig.Config) (freeInitramfs func(), err error) {
	wait := time.Duration(cfg.RootWait) * time.Second
	rootFlags := uintptr(unix.MS_RDONLY)
	switch cfg.RootFSType {
	case "virtiofs", "9p":
		// A shared directory is named by its tag and mounted read-write:
		// the host decides what may be written (the overlay never writes
		// to its lower layer), and bind mounts of its writable parts
		// stay writable.
		rootFlags = 0
	default:
		if err := waitDevice(ctx, "root device", cfg.Root, wait); err != nil {
			return nil, err
		}
	}
	flags, data := MountOptions(cfg.RootOptions)
	if err := mount(cfg.Root, lowerDir, cfg.RootFSType, rootFlags|flags, data); err != nil {
		return nil, fmt.Errorf("%w (supermachine.root, supermachine.rootfstype, supermachine.rootoptions)", err)
	}
	if cfg.Upper != "" {
		if err := waitDevice(ctx, "upper device", cfg.Upper, wait); err != nil {
			return nil, err
		}
		if err := mount(cfg.Upper, rwDir, cfg.UpperFSType, 0, ""); err != nil {
			return nil, fmt.Errorf("%w (supermachine.upper, supermachine.upperfstype)", err)
		}
	} else if err := mount("tmpfs", rwDir, "tmpfs", 0, "size="+cfg.OverlaySize+",mode=0755"); err != nil {
		return nil, fmt.Errorf("%w (supermachine.overlay_size)", err)
	}
	for _, d := range []string{rwDir + "/upper", rwDir + "/work"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("upper layer: %w", err)
		}
	}
	opts := "lowerdir=" + lowerDir + ",upperdir=" + rwDir + "/upper,workdir=" + rwDir + "/work"
	if cfg.Upper == "" {
		// File handles (name_to_handle_at, open_by_handle_at) work on the
		// root as on the host's own file systems. The index this needs
		// ties an upper layer to its lower one, so only a fresh tmpfs
		// upper gets it; a lower without file handles (9p) makes the
		// kernel fall back to no index.
		opts += ",index=on,nfs_export=on"
	}
	if err := mount("overlay", newRootDir, "overlay", 0, opts); err != nil {
		return nil, fmt.Errorf("overlay of %s: %w", cfg.Root, err)
	}
	root, err := unix.Open(newRootDir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("the new root: %w", os.NewSyscallError("open "+newRootDir, err))
	}
	err = fillRoot(ctx, root, cfg.Mounts, wait)
	unix.Close(root)
	if err != nil {
		return nil, err
	}
	return switchRoot(newRootDir)
}

// fillRoot makes the mount points /dev, /proc, /sys and /run in the new
// root (the directory rootFD), mounts the extra mounts and moves the
// early mounts into it. Every path is resolved inside the new root, as
// the guest will see it once it is the root.
func fillRoot(ctx context.Context, rootFD int, mounts []initconfig.Mount, wait time.Duration) error {
	points := map[string]int{}
	defer func() {
		for _, fd := range points {
			unix.Close(fd)
		}
	}()
	for _, d := range []string{"/dev", "/proc", "/sys", "/run"} {
		fd, err := mkdirInRoot(rootFD, d)
		if err != nil {
			return fmt.Errorf("the new root: %w", err)
		}
		points[d] = fd
	}
	for _, m := range mounts {
		if err := extraMount(ctx, rootFD, m, wait); err != nil {
			return err
		}
	}
	for _, m := range earlyMounts {
		// move_mount, not mount --move to /proc/self/fd/N: /proc is one
		// of the mounts that move.
		if err := unix.MoveMount(unix.AT_FDCWD, m.target, points[m.target], "", unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
			return fmt.Errorf("moving %s into the new root: %w", m.target, os.NewSyscallError("move_mount", err))
		}
	}
	return nil
}

// extraMount mounts m in the new root, the directory rootFD.
func extraMount(ctx context.Context, rootFD int, m initconfig.Mount, wait time.Duration) error {
	what := fmt.Sprintf("mount %s:%s:%s", m.Source, m.Target, m.FSType)
	if strings.HasPrefix(m.Source, "/dev/") {
		if err := waitDevice(ctx, "mount source", m.Source, wait); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	dir, err := mkdirInRoot(rootFD, m.Target)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer unix.Close(dir)
	target := fdPath(dir)
	flags, data := MountOptions(m.Options)
	if m.FSType == "bind" {
		if err := mount(m.Source, target, "", unix.MS_BIND|flags&unix.MS_REC, ""); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		// A bind mount takes its flags (ro, nosuid, …) from a remount.
		if rest := flags &^ (unix.MS_BIND | unix.MS_REC); rest != 0 {
			// dir is the directory under the new mount; looked up again,
			// the target leads to the mount on top.
			top, err := openInRoot(rootFD, m.Target)
			if err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			defer unix.Close(top)
			if err := mount("", fdPath(top), "", unix.MS_REMOUNT|unix.MS_BIND|rest, ""); err != nil {
				return fmt.Errorf("%s: options %q: %w", what, m.Options, err)
			}
		}
		return nil
	}
	if err := mount(m.Source, target, m.FSType, flags, data); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// inRoot resolves a path as a process chrooted into the directory it
// starts from would: absolute symbolic links start over at that
// directory and ".." stops there. Magic links (/proc/self/root, …) are
// refused: they could lead anywhere.
const inRoot = unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS

// openInRoot opens the directory path, resolved inside the tree of the
// directory rootFD (inRoot), as an O_PATH descriptor.
func openInRoot(rootFD int, path string) (int, error) {
	how := &unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: inRoot}
	for tries := 0; ; tries++ {
		fd, err := unix.Openat2(rootFD, path, how)
		// EAGAIN: a rename or mount elsewhere raced with a ".." of the
		// lookup; the kernel asks for a retry.
		if err == unix.EAGAIN && tries < 10 {
			continue
		}
		if err == unix.ENOSYS {
			return -1, fmt.Errorf("openat2 %s: the kernel has no openat2 (Linux 5.6 or newer has it): %w", path, err)
		}
		if err != nil {
			return -1, &os.PathError{Op: "openat2", Path: path, Err: err}
		}
		return fd, nil
	}
}

// mkdirInRoot makes the directory path and its missing parents (mode
// 0755) in the tree of the directory rootFD, resolving every component
// inside that tree (inRoot): a symbolic link in the tree, absolute or
// full of "..", leads where it would for a process chrooted into it,
// never out of the tree. It returns an O_PATH descriptor of the
// directory.
func mkdirInRoot(rootFD int, path string) (int, error) {
	dir, err := openInRoot(rootFD, ".")
	if err != nil {
		return -1, err
	}
	walked := ""
	for _, name := range strings.Split(path, "/") {
		if name == "" || name == "." {
			continue
		}
		walked += "/" + name
		next, err := openInRoot(rootFD, walked)
		if errors.Is(err, unix.ENOENT) {
			// dir is where walked's parent resolved to, and name is
			// missing there (or a symbolic link to something missing).
			if err := unix.Mkdirat(dir, name, 0o755); err != nil && err != unix.EEXIST {
				unix.Close(dir)
				return -1, &os.PathError{Op: "mkdir", Path: walked, Err: err}
			}
			next, err = openInRoot(rootFD, walked)
			if errors.Is(err, unix.ENOENT) {
				if link, lerr := readlinkat(dir, name); lerr == nil {
					err = &os.PathError{Op: "mkdir", Path: walked, Err: fmt.Errorf("a symbolic link to %s, which is missing: %w", link, unix.ENOENT)}
				}
			}
		}
		unix.Close(dir)
		if err != nil {
			return -1, err
		}
		dir = next
	}
	return dir, nil
}

// readlinkat returns the target of the symbolic link name in the
// directory dirFD.
func readlinkat(dirFD int, name string) (string, error) {
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(dirFD, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// fdPath is a path that leads to what the descriptor fd is open on,
// for calls that take a path.
func fdPath(fd int) string {
	return fmt.Sprintf("/proc/self/fd/%d", fd)
}

// mountFlag returns the mount(2) flag of a mount(8) option that is a
// flag, not filesystem data, and whether the option sets or clears it.
// (A switch, not a map: a map literal is built at start-up.)
func mountFlag(opt string) (flag uintptr, set, ok bool) {
	switch opt {
	case "ro", "rw":
		return unix.MS_RDONLY, opt == "ro", true
	case "nosuid", "suid":
		return unix.MS_NOSUID, opt == "nosuid", true
	case "nodev", "dev":
		return unix.MS_NODEV, opt == "nodev", true
	case "noexec", "exec":
		return unix.MS_NOEXEC, opt == "noexec", true
	case "sync", "async":
		return unix.MS_SYNCHRONOUS, opt == "sync", true
	case "noatime", "atime":
		return unix.MS_NOATIME, opt == "noatime", true
	case "nodiratime", "diratime":
		return unix.MS_NODIRATIME, opt == "nodiratime", true
	case "relatime", "norelatime":
		return unix.MS_RELATIME, opt == "relatime", true
	case "dirsync":
		return unix.MS_DIRSYNC, true, true
	case "strictatime":
		return unix.MS_STRICTATIME, true, true
	case "lazytime":
		return unix.MS_LAZYTIME, true, true
	case "rec":
		return unix.MS_REC, true, true
	case "defaults":
		return 0, false, true
	}
	return 0, false, false
}

// MountOptions splits mount(8) -o options into mount(2) flags and the
// filesystem's data string, as mount(8) does.
func MountOptions(opts string) (flags uintptr, data string) {
	var rest []string
	for _, o := range strings.Split(opts, ",") {
		if o == "" {
			continue
		}
		f, set, ok := mountFlag(o)
		switch {
		case !ok:
			rest = append(rest, o)
		case set:
			flags |= f
		default:
			flags &^= f
		}
	}
	return flags, strings.Join(rest, ",")
}

// mount is mount(2) with an error that names what was mounted where.
func mount(source, target, fstype string, flags uintptr, data string) error {
	if err := unix.Mount(source, target, fstype, flags, data); err != nil {
		switch {
		case flags&unix.MS_MOVE != 0:
			return fmt.Errorf("mount --move %s %s: %w", source, target, err)
		case flags&unix.MS_BIND != 0:
			return fmt.Errorf("mount --bind %s %s: %w", source, target, err)
		}
		s := fmt.Sprintf("mount -t %s %s %s", fstype, source, target)
		if data != "" {
			s += " -o " + data
		}
		return fmt.Errorf("%s: %w", s, err)
	}
	return nil
}

// waitDevice waits until the block device path exists, at most d.
// Built-in drivers probe before init runs, but a slow device may come a
// moment later.
func waitDevice(ctx context.Context, what, path string, d time.Duration) error {
	if isBlockDevice(path) {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	err := poll.Until(ctx, poll.Fast, what+" "+path, func() (bool, error) { return isBlockDevice(path), nil })
	if poll.IsTimeout(err) {
		return fmt.Errorf("%s %s did not appear within %s (is the disk attached?)", what, path, d)
	}
	return err
}

func isBlockDevice(path string) bool {
	var st unix.Stat_t
	return unix.Stat(path, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFBLK
}

// switchRoot makes newRoot the root, as switch_root(8) does: it moves
// newRoot over / and changes root into it. It returns a function that
// deletes the initramfs's files (they are in RAM; the running binary's
// pages stay until it exits), reaching the old root through a descriptor
// opened before the switch.
func switchRoot(newRoot string) (freeInitramfs func(), err error) {
	var st unix.Stat_t
	if err := unix.Stat("/", &st); err != nil {
		return nil, os.NewSyscallError("stat /", err)
	}
	oldRoot, err := os.Open("/")
	if err != nil {
		return nil, err
	}
	if err := unix.Chdir(newRoot); err != nil {
		oldRoot.Close()
		return nil, os.NewSyscallError("chdir "+newRoot, err)
	}
	if err := mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		oldRoot.Close()
		return nil, err
	}
	if err := unix.Chroot("."); err != nil {
		oldRoot.Close()
		return nil, os.NewSyscallError("chroot", err)
	}
	if err := unix.Chdir("/"); err != nil {
		oldRoot.Close()
		return nil, os.NewSyscallError("chdir /", err)
	}
	return func() {
		// /proc/self/fd/N leads to the old root from inside the new one.
		deleteContents(fmt.Sprintf("/proc/self/fd/%d", oldRoot.Fd()), st.Dev)
		oldRoot.Close()
	}, nil
}

// deleteContents removes everything under dir that is on the filesystem
// dev, not crossing into other mounts (the new root, the lower and upper
// layers).
func deleteContents(dir string, dev uint64) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		var st unix.Stat_t
		if unix.Lstat(p, &st) != nil || st.Dev != dev {
			continue
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			deleteContents(p, dev)
			unix.Rmdir(p)
		} else {
			unix.Unlink(p)
		}
	}
}

// Fail reports err on console and ends the guest: with rescue set, it
// first runs a busybox shell on the console (from the initramfs, or the
// new root's /bin/sh) and powers off when the shell exits. It never
// returns.
func Fail(console io.Writer, err error, rescue bool, powerOff func() error) {
	fmt.Fprintf(console, "%sFATAL: %v\n", LogPrefix, err)
	if rescue {
		rescueShell(console)
	} else {
		fmt.Fprintf(console, "%spowering off (supermachine.rescue=1 gives a shell instead)\n", LogPrefix)
	}
	if perr := powerOff(); perr != nil {
		fmt.Fprintf(console, "%spower off: %v\n", LogPrefix, perr)
	}
	select {}
}

// rescueShell runs a shell on the standard file descriptors (the console)
// and waits for it to exit.
func rescueShell(console io.Writer) {
	shell, argv := "/bin/busybox", []string{"sh"}
	if _, err := os.Stat(shell); err != nil {
		shell, argv = "/bin/sh", []string{"sh"}
	}
	fmt.Fprintf(console, "%srescue shell (%s); exit it to power off\n", LogPrefix, shell)
	attr := &os.ProcAttr{
		Env:   []string{"PATH=/bin:/sbin:/usr/bin:/usr/sbin", "HOME=/", "TERM=linux", "PS1=rescue# "},
		Files: []*os.File{os.Stdin, os.Stdout, os.Stderr},
		Sys:   &unix.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0},
	}
	p, err := os.StartProcess(shell, argv, attr)
	if err != nil {
		// The console may refuse to be a controlling terminal.
		attr.Sys = &unix.SysProcAttr{Setsid: true}
		p, err = os.StartProcess(shell, argv, attr)
	}
	if err != nil {
		fmt.Fprintf(console, "%srescue shell: %v\n", LogPrefix, err)
		return
	}
	st, err := p.Wait()
	fmt.Fprintf(console, "%srescue shell ended (%v %v)\n", LogPrefix, st, err)
}
