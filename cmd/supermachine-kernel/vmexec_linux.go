package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// errVMExecUnsupported is nil: vmexec runs on Linux.
var errVMExecUnsupported error

// cmdVirtiofsdHelper is the hidden command vmexec-virtiofsd: in a new
// mount namespace it binds the host's root at -view, makes the whole tree
// read-only, binds each -rw directory writable over it, and execs
// virtiofsd on the view. The host's own mounts are untouched.
func cmdVirtiofsdHelper(args []string, stderr io.Writer) error {
	fs := newFlags("vmexec-virtiofsd", "(internal)", stderr)
	socket := fs.String("socket", "", "vhost-user socket path")
	view := fs.String("view", "", "empty directory for the view of /")
	bin := fs.String("virtiofsd", "", "virtiofsd binary")
	var rw multiFlag
	fs.Var(&rw, "rw", "writable directory (repeatable)")
	if err := parse(fs, args); err != nil {
		return err
	}
	runtime.LockOSThread()
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("unshare mount namespace: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	if err := unix.Mount("/", *view, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind / at %s: %w", *view, err)
	}
	if err := unix.MountSetattr(unix.AT_FDCWD, *view, unix.AT_RECURSIVE, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}); err != nil {
		return fmt.Errorf("make the view of / read-only: %w", err)
	}
	for _, d := range rw {
		if err := unix.Mount(d, filepath.Join(*view, d), "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind %s writable: %w", d, err)
		}
	}
	argv := []string{*bin, "--socket-path=" + *socket, "-o", "source=" + fuseOptValue(*view), "-o", "cache=auto", "-o", "sandbox=namespace", "-o", "xattr"}
	return unix.Exec(*bin, argv, os.Environ())
}

// fuseOptValue escapes s for virtiofsd's -o option list, which libfuse's
// option parser splits at commas; a backslash escapes the next byte.
func fuseOptValue(s string) string {
	return strings.NewReplacer(`\`, `\\`, ",", `\,`).Replace(s)
}
