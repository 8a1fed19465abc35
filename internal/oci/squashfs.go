package oci

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// ErrNoSqfstar is matched by the error when sqfstar (squashfs-tools 4.5
// or later) is not installed.
var ErrNoSqfstar = errors.New("sqfstar not found: install squashfs-tools 4.5 or later (Debian: apt-get install squashfs-tools)")

// squashfsArgs choose the root image's compression: lz4, the fastest to
// write and to read. sqfstar 4.5.1 fails on every compressor option that
// takes a value, so zstd could only run at its default level 15, which
// made a 72 MB tree into 17 MB in 17 s where lz4 made 30 MB in 0.4 s
// (two loaded cores).
var squashfsArgs = []string{"-comp", "lz4"}

// WriteSquashfs writes the tree as a squashfs image at out, an existing
// file that is overwritten. It streams the tree's tar form into sqfstar,
// which takes owners, modes, times, device numbers, hard links and
// extended attributes from the tar headers: no host file is made and no
// privilege is needed.
func (t *Tree) WriteSquashfs(ctx context.Context, out string) error {
	bin, err := exec.LookPath("sqfstar")
	if err != nil {
		return ErrNoSqfstar
	}
	r := t.Root()
	args := append([]string{"-force", "-quiet", "-no-progress", "-exit-on-error", "-reproducible",
		"-root-mode", strconv.FormatInt(r.Mode, 8), "-root-uid", strconv.Itoa(r.UID), "-root-gid", strconv.Itoa(r.GID)}, squashfsArgs...)
	args = append(args, out)
	cmd := exec.CommandContext(ctx, bin, args...)
	// sqfstar 4.5.1 ignores -root-time and gives the root directory the
	// current time; SOURCE_DATE_EPOCH lowers every later time, the
	// root's included, to its value, and is the image's creation time.
	// The newest time of the tree keeps every file's time and makes the
	// root's a function of the image (unless the tree has times in the
	// future: then the root keeps the time of the conversion).
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH="+strconv.FormatInt(t.NewestTime(), 10))
	var msgs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &msgs, &msgs
	pw, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("sqfstar: %w", err)
	}
	werr := t.WriteTar(pw)
	pw.Close()
	// A write error from sqfstar's side of the pipe (it stopped
	// reading) is reported by its exit status and messages instead.
	if werr != nil && !errors.Is(werr, syscall.EPIPE) && !errors.Is(werr, os.ErrClosed) {
		cmd.Process.Kill()
		cmd.Wait()
		return werr
	}
	if err := cmd.Wait(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("sqfstar %s: %w: %s", out, err, strings.TrimSpace(msgs.String()))
	}
	if werr != nil {
		return werr
	}
	return nil
}
