package lifetime

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// spawner runs the functions that fork children, on one thread locked for
// the life of the process (see the package documentation).
var (
	spawnOnce sync.Once
	spawnReq  chan func()
)

func spawnerLoop() {
	runtime.LockOSThread() // never unlocked: the thread lives as long as the process
	for f := range spawnReq {
		f()
	}
}

// Start starts cmd so that it dies with this process: on Linux the kernel
// kills it (SIGKILL) when this process ends, however it ends; elsewhere
// [KillChildren] does on the way out. cmd.SysProcAttr is created if nil;
// its other fields are kept.
func Start(cmd *exec.Cmd) error {
	setDeathSignal(cmd)
	spawnOnce.Do(func() {
		spawnReq = make(chan func())
		go spawnerLoop()
	})
	errc := make(chan error, 1)
	spawnReq <- func() { errc <- cmd.Start() }
	if err := <-errc; err != nil {
		return err
	}
	track(cmd.Process)
	return nil
}

// Run starts cmd with [Start] and waits for it, as cmd.Run does.
func Run(cmd *exec.Cmd) error {
	if err := Start(cmd); err != nil {
		return err
	}
	return cmd.Wait()
}

// CombinedOutput runs cmd with [Run] and returns its standard output and
// standard error together, as cmd.CombinedOutput does.
func CombinedOutput(cmd *exec.Cmd) ([]byte, error) {
	if cmd.Stdout != nil || cmd.Stderr != nil {
		return nil, errors.New("lifetime: CombinedOutput: Stdout or Stderr already set")
	}
	var b bytes.Buffer
	cmd.Stdout, cmd.Stderr = &b, &b
	err := Run(cmd)
	return b.Bytes(), err
}

// Output runs cmd with [Run] and returns its standard output, as
// cmd.Output does (standard error is discarded unless set).
func Output(cmd *exec.Cmd) ([]byte, error) {
	if cmd.Stdout != nil {
		return nil, errors.New("lifetime: Output: Stdout already set")
	}
	var b bytes.Buffer
	cmd.Stdout = &b
	err := Run(cmd)
	return b.Bytes(), err
}

var (
	childMu  sync.Mutex
	children []*os.Process
)

// track remembers p for KillChildren, forgetting children already waited
// for, so the list stays as long as the live children.
func track(p *os.Process) {
	childMu.Lock()
	defer childMu.Unlock()
	children = slices.DeleteFunc(children, func(q *os.Process) bool {
		return errors.Is(q.Signal(sigZero), os.ErrProcessDone)
	})
	children = append(children, p)
}

// KillChildren kills every child started with [Start] that has not been
// waited for yet. Programs call it on the way out; on Linux the kernel
// does the same when the process dies.
func KillChildren() {
	childMu.Lock()
	defer childMu.Unlock()
	for _, p := range children {
		p.Kill()
	}
	children = nil
}

// ownerFile is the file in a temporary directory whose flock says that
// its owner is alive.
const ownerFile = ".owner"

// tempPrefix starts the names of every directory MkdirTemp makes.
const tempPrefix = "supermachine-"

var (
	tempMu sync.Mutex
	temps  = map[string]*os.File{} // directory -> its locked .owner file
)

// MkdirTemp makes a directory in os.TempDir() named
// supermachine-<kind>-<pid>-<random>, marked as owned by this process
// (see the package documentation), and registers it for [RemoveTemps].
// kind is a short word such as "boot"; remove the directory with
// [RemoveTemp].
func MkdirTemp(kind string) (string, error) {
	if kind == "" || strings.ContainsAny(kind, "-/*") {
		return "", fmt.Errorf("lifetime: bad temporary directory kind %q", kind)
	}
	// The directory is made and marked under a hidden name, then renamed:
	// a sweep of another process never sees it unmarked (and would take
	// it for a dead owner's in the moment between mkdir and flock).
	hidden, err := os.MkdirTemp("", "."+tempPrefix+kind+"-"+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return "", err
	}
	dir := filepath.Join(filepath.Dir(hidden), strings.TrimPrefix(filepath.Base(hidden), "."))
	f, err := os.OpenFile(filepath.Join(hidden, ownerFile), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		err = lockOwner(f)
	}
	if err == nil {
		_, err = fmt.Fprintf(f, "%d\n", os.Getpid())
	}
	if err == nil {
		err = os.Rename(hidden, dir)
	}
	if err != nil {
		if f != nil {
			f.Close()
		}
		os.RemoveAll(hidden)
		return "", fmt.Errorf("lifetime: marking %s: %w", hidden, err)
	}
	tempMu.Lock()
	temps[dir] = f
	tempMu.Unlock()
	return dir, nil
}

// RemoveTemp removes dir, made by [MkdirTemp], and everything in it.
func RemoveTemp(dir string) error {
	tempMu.Lock()
	f := temps[dir]
	delete(temps, dir)
	tempMu.Unlock()
	err := os.RemoveAll(dir)
	if f != nil {
		f.Close() // after the removal: the mark holds until the directory is gone
	}
	return err
}

// RemoveTemps removes every directory made by [MkdirTemp] and not removed
// yet. Programs call it on the way out, after [KillChildren].
func RemoveTemps() {
	tempMu.Lock()
	dirs := make([]string, 0, len(temps))
	for d := range temps {
		dirs = append(dirs, d)
	}
	tempMu.Unlock()
	for _, d := range dirs {
		RemoveTemp(d)
	}
}

// sweepGrace is how long a directory whose owner died while making it
// (hidden, not renamed yet), or one without the mark, is left alone.
const sweepGrace = time.Minute

// Sweep removes the directories [MkdirTemp] made in os.TempDir() whose
// owner is dead: nobody holds the flock on their .owner file. Before
// removing one it calls before, if not nil, with its path (to stop what
// the dead owner left running there, e.g. a QEMU through its monitor
// socket). It returns the directories removed; errors are not fatal to a
// sweep and are returned joined.
func Sweep(before func(dir string)) ([]string, error) {
	root := os.TempDir()
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, e := range ents {
		hidden := strings.HasPrefix(e.Name(), "."+tempPrefix)
		if !e.IsDir() || !strings.HasPrefix(e.Name(), tempPrefix) && !hidden {
			continue
		}
		dir := filepath.Join(root, e.Name())
		if hidden {
			// Being marked now, or abandoned while it was.
			if fi, err := e.Info(); err != nil || time.Since(fi.ModTime()) < sweepGrace {
				continue
			}
			if err := os.RemoveAll(dir); err != nil {
				errs = append(errs, err)
			} else {
				removed = append(removed, dir)
			}
			continue
		}
		tempMu.Lock()
		_, mine := temps[dir]
		tempMu.Unlock()
		if mine || !stale(dir) {
			continue
		}
		if before != nil {
			before(dir)
		}
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, dir)
	}
	return removed, errors.Join(errs...)
}

// stale reports whether dir, named like MkdirTemp's directories, belongs
// to a process that is gone.
func stale(dir string) bool {
	// supermachine-<kind>-<pid>-<random>
	parts := strings.Split(strings.TrimPrefix(filepath.Base(dir), tempPrefix), "-")
	if len(parts) != 3 {
		return false
	}
	if _, err := strconv.Atoi(parts[1]); err != nil {
		return false
	}
	f, err := os.OpenFile(filepath.Join(dir, ownerFile), os.O_RDWR, 0)
	if err != nil {
		// Unmarked: its owner died before marking it, or is marking it now.
		fi, serr := os.Stat(dir)
		return errors.Is(err, os.ErrNotExist) && serr == nil && time.Since(fi.ModTime()) > sweepGrace
	}
	defer f.Close()
	return ownerGone(f)
}
