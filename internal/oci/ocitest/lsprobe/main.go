//go:build linux

// Command lsprobe prints what a guest sees: every path of the root file
// system as listing lines (mount points' content left out), then its
// environment, working directory, user (real and effective: installed
// setuid root, it reads every file whoever runs it) and machine, and
// exits with the code given as its first argument. The image boot tests
// run it as the image's entrypoint.
package main

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/supermachine-go/supermachine-kernel/internal/oci/ocitest/listing"
)

func main() {
	var root syscall.Stat_t
	if err := syscall.Lstat("/", &root); err != nil {
		fail(err)
	}
	first := map[[2]uint64]string{}
	err := filepath.WalkDir("/", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == "/" {
			return nil
		}
		rel := strings.TrimPrefix(p, "/")
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			return err
		}
		// Overlayfs gives directories its own device, and other
		// files that of the layer they come from.
		if d.IsDir() && st.Dev != root.Dev {
			fmt.Printf("F %s\t%s\n", rel, listing.MountPoint)
			return fs.SkipDir
		}
		e := listing.Entry{Mode: int64(st.Mode & 0o7777), UID: int(st.Uid), GID: int(st.Gid), MTime: st.Mtim.Sec}
		switch st.Mode & syscall.S_IFMT {
		case syscall.S_IFREG:
			e.Type = '0'
			key := [2]uint64{uint64(st.Dev), st.Ino}
			if f, ok := first[key]; ok && st.Nlink > 1 {
				e.Type, e.Link = '1', f
				e.MTime = st.Mtim.Sec
			} else {
				first[key] = rel
				if e.Content, err = os.ReadFile(p); err != nil {
					return err
				}
			}
		case syscall.S_IFDIR:
			e.Type = '5'
		case syscall.S_IFLNK:
			e.Type = '2'
			if e.Link, err = os.Readlink(p); err != nil {
				return err
			}
		case syscall.S_IFCHR, syscall.S_IFBLK:
			e.Type = map[bool]byte{true: '3', false: '4'}[st.Mode&syscall.S_IFMT == syscall.S_IFCHR]
			e.Major, e.Minor = int64(unix.Major(uint64(st.Rdev))), int64(unix.Minor(uint64(st.Rdev)))
		case syscall.S_IFIFO:
			e.Type = '6'
		default:
			e.Type = '?'
		}
		if e.Type != '1' {
			e.Xattrs = xattrs(p)
		}
		fmt.Printf("F %s\t%s\n", rel, e.Line())
		return nil
	})
	if err != nil {
		fail(err)
	}
	for _, kv := range os.Environ() {
		fmt.Printf("E %s\n", kv)
	}
	wd, _ := os.Getwd()
	var u unix.Utsname
	unix.Uname(&u)
	fmt.Printf("W %s\nU %d:%d euid %d\nA %s\n", wd, os.Getuid(), os.Getgid(), os.Geteuid(), unix.ByteSliceToString(u.Machine[:]))
	code := 0
	if len(os.Args) > 1 {
		code, _ = strconv.Atoi(os.Args[1])
	}
	os.Exit(code)
}

func xattrs(p string) map[string]string {
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err != nil || n == 0 {
		return nil
	}
	m := map[string]string{}
	for _, name := range strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
		v := make([]byte, 64<<10)
		vn, err := unix.Lgetxattr(p, name, v)
		if err != nil {
			fail(fmt.Errorf("%s: getxattr %s: %w", p, name, err))
		}
		m[name] = string(v[:vn])
	}
	return m
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "lsprobe:", err)
	os.Exit(100)
}
