package microvm

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Sharing is how host directories (Config.Shares, and Config.Root with
// ShareRoot) reach the guest.
type Sharing string

const (
	// Sharing9P (the default) is QEMU's own virtio-9p server: no helper
	// process and no privilege. The files are read and written as this
	// process's user: a file the guest creates belongs to that user,
	// and a chown in the guest succeeds without changing the owner. 9p
	// has no file handles (open_by_handle_at).
	Sharing9P Sharing = "9p"
	// SharingVirtioFS serves each share with a virtiofsd over
	// vhost-user: file handles work, owners are kept. It needs root
	// on a Linux host and virtiofsd installed (Debian:
	// qemu-system-common). A read-only share is a read-only view of
	// the directory made by the helper process (see the package doc).
	SharingVirtioFS Sharing = "virtiofs"
	// SharingAuto is virtio-fs when this process may use it (root on
	// Linux, virtiofsd installed), 9p otherwise.
	SharingAuto Sharing = "auto"
)

// HelperEnv is the environment variable that makes a process the helper
// of a read-only virtio-fs share (Linux): Start runs this program's own
// executable (os.Executable) again with it set, and this package's init
// function then sets up the view and execs virtiofsd on it, so the
// helper never reaches main. A program that imports this package needs
// nothing else for it.
const HelperEnv = "SUPERMACHINE_MICROVM_HELPER"

// rootShareTag is the mount tag of a shared root (Config.ShareRoot).
const rootShareTag = "supermachine-root"

// shareTag is the mount tag of the i-th share.
func shareTag(i int) string { return fmt.Sprintf("supermachine-share%d", i) }

// hostShare is a host directory an engine exports under a tag.
type hostShare struct {
	tag      string
	hostDir  string
	writable bool
}

// share9POptions are the guest's mount options of a 9p share: the
// kernel's and QEMU's 9P2000.L, 512 KiB messages (the default 128 KiB
// costs round trips on every large read) and the page cache for mmap
// only, so that every read and write reaches the host at once.
const share9POptions = "trans=virtio,version=9p2000.L,msize=524288,cache=mmap"

// mountOptions are the guest's mount options of a share over s.
func (s Sharing) mountOptions(writable bool) string {
	var o []string
	if s == Sharing9P {
		o = append(o, share9POptions)
	}
	if !writable {
		o = append(o, "ro")
	}
	return strings.Join(o, ",")
}

// fsType is the guest's filesystem type of a share over s.
func (s Sharing) fsType() string {
	if s == SharingVirtioFS {
		return "virtiofs"
	}
	return "9p"
}

// shareableDir says why dir cannot be shared with the guest: it must be
// a directory this process can list (QEMU's 9p server and virtiofsd
// read it as this process's user, or need its listing), and QEMU takes
// no NUL in a path.
func shareableDir(dir string) error {
	if strings.ContainsRune(dir, 0) {
		return fmt.Errorf("%q: a path with a NUL byte", dir)
	}
	return checkOpened(dir, func(f *os.File, st os.FileInfo) error {
		if !st.IsDir() {
			return fmt.Errorf("%s is not a directory", dir)
		}
		if _, err := f.Readdirnames(1); err != nil && err != io.EOF {
			return fmt.Errorf("%s cannot be listed: %w", dir, err)
		}
		return nil
	})
}

// absDir is dir made absolute, with its symbolic links resolved:
// virtiofsd refuses a source that is a link (Debian's /bin is one).
func absDir(dir string) (string, error) {
	d, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(d)
}
