// Package rootfs makes small root images for guests: a busybox tree
// (busybox, its applet links, /etc/passwd and /etc/group) packed as
// squashfs with mksquashfs, and probing what filesystem an image holds.
package rootfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/supermachine-go/supermachine-kernel/internal/lifetime"
)

// Applets get /bin links to busybox in a tree written by WriteBusyboxTree.
var Applets = []string{
	"sh", "ash", "cat", "echo", "ls", "mkdir", "mount", "umount", "stty", "sleep", "id", "uname",
	"grep", "head", "tail", "wc", "stat", "sync", "ip", "true", "false", "env", "pwd", "test", "[",
	"tr", "sed", "rm", "cp", "mv", "ps", "df", "free", "date", "hostname", "poweroff", "reboot", "vi", "less",
}

// WriteBusyboxTree writes a minimal root tree into dir: /bin/busybox with
// its applet links, /etc/passwd and /etc/group (root and nobody), /tmp,
// /root, /mnt. files adds more files (relative path to content, mode 0755
// under bin/, else 0644).
func WriteBusyboxTree(dir string, busybox []byte, files map[string][]byte) error {
	for _, d := range []string{"bin", "etc", "tmp", "mnt", "root", "home/nobody", "dev", "proc", "sys", "run"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(dir, "tmp"), 0o1777); err != nil {
		return err
	}
	all := map[string][]byte{
		"etc/passwd":  []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home/nobody:/bin/sh\n"),
		"etc/group":   []byte("root:x:0:\nnogroup:x:65534:\n"),
		"bin/busybox": busybox,
	}
	for k, v := range files {
		all[k] = v
	}
	for name, content := range all {
		mode := os.FileMode(0o644)
		if strings.HasPrefix(name, "bin/") {
			mode = 0o755
		}
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, content, mode); err != nil {
			return err
		}
	}
	for _, a := range Applets {
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", a)); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
	}
	return nil
}

// ErrNoMksquashfs is returned (wrapped) when mksquashfs is not installed.
var ErrNoMksquashfs = errors.New("mksquashfs not found: install the Debian package squashfs-tools")

// Squashfs packs tree into a squashfs image at out, owned by root,
// compressed with comp: xz, zstd, gzip, lz4 or lzo (what the bundled
// kernel reads).
func Squashfs(ctx context.Context, tree, out, comp string) error {
	switch comp {
	case "xz", "zstd", "gzip", "lz4", "lzo":
	default:
		return fmt.Errorf("rootfs: squashfs compression %q: the kernel reads xz, zstd, gzip, lz4 and lzo", comp)
	}
	if _, err := exec.LookPath("mksquashfs"); err != nil {
		return ErrNoMksquashfs
	}
	cmd := exec.CommandContext(ctx, "mksquashfs", tree, out, "-noappend", "-all-root", "-quiet", "-no-progress", "-comp", comp)
	if b, err := lifetime.CombinedOutput(cmd); err != nil {
		return fmt.Errorf("mksquashfs %s: %w\n%s", tree, err, b)
	}
	return nil
}

// FSType returns the filesystem of an image file: "squashfs" or "ext4"
// (ext2/3/4 superblock), or an error naming the file.
func FSType(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b := make([]byte, 2048)
	if _, err := io.ReadFull(f, b); err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	switch {
	case string(b[:4]) == "hsqs":
		return "squashfs", nil
	case b[1080] == 0x53 && b[1081] == 0xef:
		return "ext4", nil
	}
	return "", fmt.Errorf("%s is neither a squashfs nor an ext2/3/4 image", path)
}
