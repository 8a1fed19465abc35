package microvm

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/supermachine-go/supermachine-kernel/internal/lifetime"
	"github.com/supermachine-go/supermachine-kernel/internal/poll"
	"github.com/supermachine-go/supermachine-kernel/internal/tail"
)

// helperReadOnlyView is HelperEnv's value for the read-only view.
const helperReadOnlyView = "virtiofsd-readonly-view"

func init() {
	if os.Getenv(HelperEnv) != helperReadOnlyView {
		return
	}
	err := readOnlyViewHelper(os.Args[1:])
	fmt.Fprintf(os.Stderr, "microvm helper: %v\n", err)
	os.Exit(1)
}

// readOnlyViewHelper binds -source at -view in a new mount namespace of
// its own, makes the whole view read-only (submounts included), and execs
// virtiofsd on it. The host's own mounts are untouched, and the view is
// gone with the namespace when virtiofsd exits. It returns only on
// failure.
func readOnlyViewHelper(args []string) error {
	fs := flag.NewFlagSet("microvm helper", flag.ContinueOnError)
	socket := fs.String("socket", "", "vhost-user socket path")
	view := fs.String("view", "", "empty directory for the view")
	source := fs.String("source", "", "directory to show read-only")
	bin := fs.String("virtiofsd", "", "virtiofsd binary")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *socket == "" || *view == "" || *source == "" || *bin == "" {
		return errors.New("want -socket, -view, -source and -virtiofsd")
	}
	// The namespace is the calling thread's until exec, which keeps it.
	runtime.LockOSThread()
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("unshare the mount namespace: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make the mounts private: %w", err)
	}
	if err := unix.Mount(*source, *view, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s at %s: %w", *source, *view, err)
	}
	if err := unix.MountSetattr(unix.AT_FDCWD, *view, unix.AT_RECURSIVE, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}); err != nil {
		return fmt.Errorf("make the view of %s read-only: %w", *source, err)
	}
	return unix.Exec(*bin, virtiofsdArgs(*bin, *socket, *view), os.Environ())
}

// virtiofsdArgs is the command line of virtiofsd serving dir on socket.
func virtiofsdArgs(bin, socket, dir string) []string {
	return []string{bin, "--socket-path=" + socket, "-o", "source=" + fuseOptValue(dir), "-o", "cache=auto", "-o", "sandbox=namespace", "-o", "xattr"}
}

// fuseOptValue escapes s for virtiofsd's -o option list, which libfuse's
// option parser splits at commas; a backslash escapes the next byte.
func fuseOptValue(s string) string {
	return strings.NewReplacer(`\`, `\\`, ",", `\,`).Replace(s)
}

// virtiofsdPaths are where Debian and other distributions put virtiofsd.
var virtiofsdPaths = []string{"/usr/lib/qemu/virtiofsd", "/usr/libexec/virtiofsd", "/usr/lib/virtiofsd"}

// virtiofsdBinary is the path of virtiofsd, or "" if it is not installed.
func virtiofsdBinary() string {
	for _, p := range virtiofsdPaths {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("virtiofsd"); err == nil {
		return p
	}
	return ""
}

// virtiofsUsable says why this process cannot share over virtio-fs.
func virtiofsUsable() error {
	if os.Geteuid() != 0 {
		return errors.New("virtio-fs needs root on the host (virtiofsd and the read-only views use mount namespaces); Sharing9P needs no privilege")
	}
	if virtiofsdBinary() == "" {
		return errors.New("virtiofsd is not installed (Debian: apt-get install qemu-system-common, or the virtiofsd package); Sharing9P needs none")
	}
	return nil
}

// virtiofsdLines is how many of the daemons' last lines are kept for
// error reports.
const virtiofsdLines = 20

// virtiofsds are the running daemons of a VM's virtio-fs shares.
type virtiofsds struct {
	out   *tail.Lines // their last messages, together
	procs []*exec.Cmd
	done  []chan struct{}
}

// virtiofsdStartTimeout bounds the wait for the daemons' sockets, which
// they create within milliseconds; it covers a loaded machine.
const virtiofsdStartTimeout = 10 * time.Second

// startVirtiofsds starts one virtiofsd per share, each on a socket in
// dir, and returns once every socket exists. A read-only share is served
// from its read-only view, made by this program re-run as the helper.
func startVirtiofsds(ctx context.Context, dir string, shares []hostShare, out io.Writer) (*virtiofsds, []string, error) {
	bin := virtiofsdBinary()
	if bin == "" {
		return nil, nil, virtiofsUsable()
	}
	self, err := os.Executable()
	if err != nil {
		return nil, nil, fmt.Errorf("microvm: the helper of read-only virtio-fs shares runs this program again: %w", err)
	}
	d := &virtiofsds{out: tail.New(virtiofsdLines, out)}
	var sockets []string
	for _, s := range shares {
		socket := virtiofsdSocket(dir, s.tag)
		var cmd *exec.Cmd
		if s.writable {
			argv := virtiofsdArgs(bin, socket, s.hostDir)
			cmd = exec.CommandContext(ctx, argv[0], argv[1:]...)
		} else {
			view := filepath.Join(dir, "view-"+s.tag)
			if err := os.Mkdir(view, 0o700); err != nil {
				d.stop()
				return nil, nil, err
			}
			cmd = exec.CommandContext(ctx, self, "-socket", socket, "-view", view, "-source", s.hostDir, "-virtiofsd", bin)
			cmd.Env = append(os.Environ(), HelperEnv+"="+helperReadOnlyView)
		}
		cmd.Stdout, cmd.Stderr = d.out, d.out
		if err := lifetime.Start(cmd); err != nil {
			d.stop()
			return nil, nil, fmt.Errorf("microvm: starting virtiofsd for %s: %w", s.hostDir, err)
		}
		done := make(chan struct{})
		go func() {
			cmd.Wait()
			close(done)
		}()
		d.procs, d.done = append(d.procs, cmd), append(d.done, done)
		sockets = append(sockets, socket)
	}
	wctx, cancel := context.WithTimeout(ctx, virtiofsdStartTimeout)
	defer cancel()
	err = poll.Until(wctx, poll.Fast, "the virtiofsd sockets in "+dir, func() (bool, error) {
		for i, socket := range sockets {
			select {
			case <-d.done[i]:
				return false, poll.Stop(fmt.Errorf("microvm: virtiofsd for %s exited at once%s", shares[i].hostDir, d.messages()))
			default:
			}
			if _, err := os.Stat(socket); err != nil {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		d.stop()
		var pe *poll.Error
		if errors.As(err, &pe) {
			return nil, nil, fmt.Errorf("microvm: %w%s", err, d.messages())
		}
		return nil, nil, err
	}
	return d, sockets, nil
}

// virtiofsdSocket is the socket of the daemon of the share tagged tag.
func virtiofsdSocket(dir, tag string) string {
	return filepath.Join(dir, "virtiofsd-"+tag+".sock")
}

// messages are the daemons' last lines, for an error report.
func (d *virtiofsds) messages() string {
	if d == nil {
		return ""
	}
	s := strings.TrimSpace(d.out.String())
	if s == "" {
		return ""
	}
	return "\n--- virtiofsd said ---\n" + s
}

// stop kills the daemons and waits for them.
func (d *virtiofsds) stop() {
	if d == nil {
		return
	}
	for i, p := range d.procs {
		p.Process.Kill()
		<-d.done[i]
	}
}
