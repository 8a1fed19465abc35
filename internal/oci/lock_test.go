package oci_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/supermachine-go/supermachine-kernel/internal/oci"
	"github.com/supermachine-go/supermachine-kernel/internal/oci/ocitest"
	"github.com/supermachine-go/supermachine-kernel/internal/poll"
	"github.com/supermachine-go/supermachine-kernel/internal/reexec"
)

func TestMain(m *testing.M) {
	switch os.Getenv(reexec.EnvVar) {
	case "prepare":
		helperPrepare(os.Args[1], os.Args[2])
	case "hold":
		helperHold(os.Args[1], os.Args[2])
	default:
		os.Exit(m.Run())
	}
}

// helperPrepare is a helper process: it prepares the image at layoutDir
// in the cache dir, printing its progress and then its result as JSON.
func helperPrepare(layoutDir, dir string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	im, err := oci.Prepare(ctx, layoutDir, oci.Options{Arch: "amd64", Dir: dir,
		Progress: func(msg string) { fmt.Println("progress:", msg) }})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	b, _ := json.Marshal(im)
	fmt.Printf("result: %s\n", b)
	os.Exit(0)
}

// helperHold is a helper process in the middle of its work on the cache
// dir, as a crash would leave it: an OCI archive being extracted, the
// entry of digest being converted, an entry being removed. It prints
// their paths and waits to be killed.
func helperHold(dir, digest string) {
	fail := func(err error) {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	archive, _, err := oci.MkdirLocked(dir, oci.ArchivePrefix)
	if err != nil {
		fail(err)
	}
	if err := os.WriteFile(filepath.Join(archive, "index.json"), []byte("{}"), 0o644); err != nil {
		fail(err)
	}
	if _, err := oci.LockEntry(context.Background(), dir, digest); err != nil {
		fail(err)
	}
	entry := oci.EntryDir(dir, digest)
	if err := os.MkdirAll(entry, 0o755); err != nil {
		fail(err)
	}
	if err := os.WriteFile(filepath.Join(entry, ".root.squashfs.tmp-1"), []byte("half a root"), 0o644); err != nil {
		fail(err)
	}
	removing, _, err := oci.MkdirLocked(filepath.Dir(entry), oci.RemovingPrefix)
	if err != nil {
		fail(err)
	}
	if err := os.WriteFile(filepath.Join(removing, "root.squashfs"), []byte("an old root"), 0o644); err != nil {
		fail(err)
	}
	fmt.Println("holding", archive, entry, removing)
	time.Sleep(time.Hour) // until killed
}

// helper is a helper process and the lines it prints.
type helper struct {
	cmd   *exec.Cmd
	lines chan string // closed when its output ends
}

func startHelper(t *testing.T, mode string, args ...string) *helper {
	t.Helper()
	cmd, err := reexec.Command(mode, args...)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	h := &helper{cmd: cmd, lines: make(chan string, 1000)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			h.lines <- sc.Text()
		}
		close(h.lines)
	}()
	return h
}

// expect returns the rest of the first line the helper prints that
// starts with prefix, failing the test if the helper reports an error,
// ends, or says nothing of the sort within a minute.
func (h *helper) expect(t *testing.T, prefix string) string {
	t.Helper()
	timeout := time.After(time.Minute)
	for {
		select {
		case l, ok := <-h.lines:
			if !ok {
				t.Fatalf("helper %d ended before printing %q", h.cmd.Process.Pid, prefix)
			}
			if rest, ok := strings.CutPrefix(l, prefix); ok {
				return rest
			}
			if strings.HasPrefix(l, "error:") {
				t.Fatalf("helper %d: %s", h.cmd.Process.Pid, l)
			}
		case <-timeout:
			t.Fatalf("waited a minute for helper %d to print %q", h.cmd.Process.Pid, prefix)
		}
	}
}

// testLayout writes an OCI layout of the layered test image and returns
// it and the image's digest.
func testLayout(t *testing.T) (string, string) {
	t.Helper()
	img := layeredImage(t, "amd64")
	layoutDir := filepath.Join(t.TempDir(), "layout")
	if err := ocitest.WriteLayout(layoutDir, img); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return layoutDir, d.String()
}

// cacheHolds fails unless the cache dir holds exactly the paths want
// (relative, slash-separated, directories included).
func cacheHolds(t *testing.T, dir string, want ...string) {
	t.Helper()
	var got []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && p != dir {
			rel, _ := filepath.Rel(dir, p)
			got = append(got, filepath.ToSlash(rel))
		}
		return nil
	})
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("the cache holds\n\t%s\nwant\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
	}
}

// entryPaths are the paths of a complete cache entry of digest.
func entryPaths(dir, digest string) []string {
	ed, _ := filepath.Rel(dir, oci.EntryDir(dir, digest))
	ed = filepath.ToSlash(ed)
	return []string{ed, ed + "/image.json", ed + "/root.squashfs"}
}

// Two processes prepare one image while a conversion of it is under
// way (the test holds its lock): both wait, then one converts and the
// other waits for it and uses its root.
func TestPrepareWaitsForAnotherProcess(t *testing.T) {
	needSqfstar(t)
	layoutDir, digest := testLayout(t)
	dir := t.TempDir()
	unlock, err := oci.LockEntry(context.Background(), dir, digest)
	if err != nil {
		t.Fatal(err)
	}
	hs := []*helper{startHelper(t, "prepare", layoutDir, dir), startHelper(t, "prepare", layoutDir, dir)}
	for _, h := range hs {
		h.expect(t, "progress: waiting for another conversion of "+digest)
	}
	unlock()
	converted := 0
	want := filepath.Join(oci.EntryDir(dir, digest), "root.squashfs")
	for i, h := range hs {
		var im oci.Image
		if err := json.Unmarshal([]byte(h.expect(t, "result: ")), &im); err != nil {
			t.Fatal(err)
		}
		if im.Converted {
			converted++
		}
		if im.Root != want || im.Digest != digest {
			t.Errorf("process %d got %+v, want the root %s", i, im, want)
		}
	}
	if converted != 1 {
		t.Errorf("%d of 2 processes converted the image, want 1", converted)
	}
	cacheHolds(t, dir, append(entryPaths(dir, digest), "v1")...)
}

// Goroutines of one process preparing one image convert it once: all
// wait while a conversion is under way, then one converts and the others
// use its root.
func TestPrepareConcurrently(t *testing.T) {
	needSqfstar(t)
	layoutDir, digest := testLayout(t)
	dir := t.TempDir()
	unlock, err := oci.LockEntry(context.Background(), dir, digest)
	if err != nil {
		t.Fatal(err)
	}
	waiting := make(chan int, 4)
	var wg sync.WaitGroup
	ims := make([]*oci.Image, 4)
	for i := range ims {
		wg.Go(func() {
			im, err := oci.Prepare(context.Background(), layoutDir, oci.Options{Arch: "amd64", Dir: dir,
				Progress: func(msg string) {
					if strings.HasPrefix(msg, "waiting for another conversion of "+digest) {
						waiting <- i
					}
				}})
			if err != nil {
				t.Error(err)
				return
			}
			ims[i] = im
		})
	}
	for range ims {
		select {
		case <-waiting:
		case <-time.After(time.Minute):
			unlock()
			wg.Wait()
			t.Fatal("waited a minute for the goroutines to wait for the lock")
		}
	}
	unlock()
	wg.Wait()
	converted := 0
	for i, im := range ims {
		if im == nil {
			continue
		}
		if im.Converted {
			converted++
		}
		if im.Root != ims[0].Root {
			t.Errorf("Prepare %d got %s, the first %s", i, im.Root, ims[0].Root)
		}
	}
	if converted != 1 {
		t.Errorf("%d of %d Prepares converted the image, want 1", converted, len(ims))
	}
	cacheHolds(t, dir, append(entryPaths(dir, digest), "v1")...)
}

// A wait for another conversion ends with the context, and says what it
// waited for.
func TestPrepareWaitEndsWithContext(t *testing.T) {
	needSqfstar(t)
	layoutDir, digest := testLayout(t)
	dir := t.TempDir()
	unlock, err := oci.LockEntry(context.Background(), dir, digest)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = oci.Prepare(ctx, layoutDir, oci.Options{Arch: "amd64", Dir: dir})
	if elapsed := time.Since(start); elapsed > 10*time.Second {
		t.Errorf("Prepare returned %s after its deadline", elapsed)
	}
	lock := oci.EntryDir(dir, digest) + oci.LockSuffix
	if !errors.Is(err, context.DeadlineExceeded) || !poll.IsTimeout(err) {
		t.Fatalf("got %v, want a wait that ran out of time", err)
	}
	for _, s := range []string{"image " + layoutDir + ": ", "another conversion of " + digest, lock} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("%q does not say %q", err, s)
		}
	}
	t.Logf("deadline: %v", err)
	unlock()
	cacheHolds(t, dir, "v1")
}

// A sweep, at the start of List and Prepare, removes what a writer that
// died left in the cache (a process killed in the middle of its work,
// and leftovers of writers that held no lock), and keeps what a live one
// holds.
func TestSweep(t *testing.T) {
	needSqfstar(t)
	layoutDir, digest := testLayout(t)
	dir := t.TempDir()
	if _, err := oci.Prepare(context.Background(), layoutDir, oci.Options{Arch: "amd64", Dir: dir}); err != nil {
		t.Fatal(err)
	}
	fake := func(c string) string { return "sha256:" + strings.Repeat(c, 64) }
	live, dead := startHelper(t, "hold", dir, fake("a")), startHelper(t, "hold", dir, fake("b"))
	liveHeld := strings.Fields(live.expect(t, "holding "))
	deadHeld := strings.Fields(dead.expect(t, "holding "))
	dead.cmd.Process.Kill()
	dead.cmd.Wait()
	unlocked := []string{
		filepath.Join(dir, oci.ArchivePrefix+"123"),                          // with no lock file
		oci.EntryDir(dir, fake("c")),                                         // incomplete, no lock file
		filepath.Join(dir, "v1", oci.RemovingPrefix+"sha256-"+fake("d")[7:]), // no lock file
	}
	for _, d := range unlocked {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "f"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	stray := oci.EntryDir(dir, fake("e")) + oci.LockSuffix
	if err := os.WriteFile(stray, nil, 0o644); err != nil {
		t.Fatal(err)
	}

	imgs, err := oci.List(dir)
	if err != nil || len(imgs) != 1 || imgs[0].Digest != digest {
		t.Errorf("List: %+v, %v; want the one complete image", imgs, err)
	}
	for _, p := range append(append(deadHeld, unlocked...), stray) {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s left by a dead writer is still there (%v)", p, err)
		}
	}
	// The live writer's directories, their lock files and contents.
	var liveWant []string
	for i, inside := range []string{"index.json", ".root.squashfs.tmp-1", "root.squashfs"} {
		rel, _ := filepath.Rel(dir, liveHeld[i])
		rel = filepath.ToSlash(rel)
		liveWant = append(liveWant, rel, rel+oci.LockSuffix, rel+"/"+inside)
	}
	cacheHolds(t, dir, append(append(liveWant, entryPaths(dir, digest)...), "v1")...)

	live.cmd.Process.Kill()
	live.cmd.Wait()
	im, err := oci.Prepare(context.Background(), layoutDir, oci.Options{Arch: "amd64", Dir: dir})
	if err != nil || im.Converted {
		t.Fatalf("Prepare: %+v, %v; want the cached image", im, err)
	}
	cacheHolds(t, dir, append(entryPaths(dir, digest), "v1")...)
}

// A conversion killed while another Prepare of the image waits for it:
// the waiter converts, from a clean entry.
func TestPrepareAfterAKilledConversion(t *testing.T) {
	needSqfstar(t)
	layoutDir, digest := testLayout(t)
	dir := t.TempDir()
	h := startHelper(t, "hold", dir, digest)
	h.expect(t, "holding ")
	type result struct {
		im  *oci.Image
		err error
	}
	waiting := make(chan struct{}, 1)
	done := make(chan result, 1)
	go func() {
		im, err := oci.Prepare(context.Background(), layoutDir, oci.Options{Arch: "amd64", Dir: dir,
			Progress: func(msg string) {
				if strings.HasPrefix(msg, "waiting for another conversion") {
					waiting <- struct{}{}
				}
			}})
		done <- result{im, err}
	}()
	select {
	case <-waiting:
	case <-time.After(time.Minute):
		t.Fatal("waited a minute for Prepare to wait for the helper's conversion")
	}
	h.cmd.Process.Kill()
	h.cmd.Wait()
	var r result
	select {
	case r = <-done:
	case <-time.After(time.Minute):
		t.Fatal("waited a minute for Prepare after the helper's death")
	}
	if r.err != nil || !r.im.Converted {
		t.Fatalf("Prepare: %+v, %v; want a conversion", r.im, r.err)
	}
	if _, err := oci.List(dir); err != nil { // sweeps the helper's other leftovers
		t.Fatal(err)
	}
	cacheHolds(t, dir, append(entryPaths(dir, digest), "v1")...)
}
