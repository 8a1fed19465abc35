package microvm

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// needVMM skips a boot test where QEMU for the host arch is missing.
func needVMM(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("boots a guest")
	}
	bin := map[string]string{"amd64": "qemu-system-x86_64", "arm64": "qemu-system-aarch64"}[runtimeArch()]
	if _, err := exec.LookPath(bin); err != nil {
		t.Skipf("%s is not installed", bin)
	}
	if _, err := exec.LookPath("mksquashfs"); err != nil {
		t.Skip("mksquashfs is not installed")
	}
}

// sharings are the ways of sharing this process may use: 9p, and
// virtio-fs as root with virtiofsd installed.
func sharings(t *testing.T) []Sharing {
	if err := virtiofsUsable(); err != nil {
		t.Logf("virtio-fs left out: %v", err)
		return []Sharing{Sharing9P}
	}
	return []Sharing{Sharing9P, SharingVirtioFS}
}

// TestStartCommandShareClose boots the default root, runs a command,
// reads a file written by the guest, sees a read-only and a writable
// share over each way of sharing, and checks that Close leaves nothing
// behind.
func TestStartCommandShareClose(t *testing.T) {
	needVMM(t)
	for _, sharing := range sharings(t) {
		t.Run(string(sharing), func(t *testing.T) { testStartCommandShareClose(t, sharing) })
	}
}

func testStartCommandShareClose(t *testing.T, sharing Sharing) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ro, rw := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(ro, "hello.txt"), []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var console bytes.Buffer
	vm, err := Start(ctx, Config{
		Shares:  []Share{{HostDir: ro, GuestPath: "/mnt/ro"}, {HostDir: rw, GuestPath: "/mnt/rw", Writable: true}},
		Sharing: sharing,
		Console: &lockedBuffer{b: &console},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Kill()
	t.Logf("accel %s, fell back: %q, ready after %s", vm.Accel(), vm.FellBack(), vm.ReadyAfter())
	if vm.ReadyAfter() <= 0 || vm.Accel() == "" {
		t.Errorf("ReadyAfter %s, Accel %q", vm.ReadyAfter(), vm.Accel())
	}

	out, err := vm.Command(ctx, "sh", "-c", "echo hi > /tmp/f; cat /mnt/ro/hello.txt; echo guest > /mnt/rw/out.txt").Output()
	if err != nil {
		t.Fatalf("command: %v", err)
	}
	if string(out) != "from the host\n" {
		t.Errorf("read-only share: guest read %q", out)
	}
	b, err := vm.ReadFile(ctx, "/tmp/f")
	if err != nil || string(b) != "hi\n" {
		t.Errorf("ReadFile = %q, %v; want hi", b, err)
	}
	if err := vm.WriteFile(ctx, "/tmp/g", []byte("to the guest"), 0o600); err != nil {
		t.Errorf("WriteFile: %v", err)
	} else if out, err := vm.Command(ctx, "stat", "-c", "%a %s", "/tmp/g").Output(); err != nil || string(out) != "600 12\n" {
		t.Errorf("the written file: %q, %v; want mode 600, 12 bytes", out, err)
	}
	if b, err := os.ReadFile(filepath.Join(rw, "out.txt")); err != nil || string(b) != "guest\n" {
		t.Errorf("writable share: host read %q, %v", b, err)
	}
	if err := vm.Command(ctx, "sh", "-c", "echo x > /mnt/ro/nope").Run(); err == nil {
		t.Error("the read-only share took a write")
	}
	if _, err := os.Stat(filepath.Join(ro, "nope")); err == nil {
		t.Error("the guest wrote into the read-only share's directory")
	}
	if out, err := vm.Command(ctx, "grep", " /mnt/r[ow] ", "/proc/mounts").Output(); err != nil || strings.Count(string(out), " "+sharing.fsType()+" ") != 2 {
		t.Errorf("the guest's share mounts: %q, %v; want two of type %s", out, err, sharing.fsType())
	}
	dir := vm.dir
	before := children(t)
	if err := vm.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the VM's directory %s outlived Close: %v", dir, err)
	}
	if sharing == SharingVirtioFS && len(before) < 3 {
		t.Errorf("before Close this process had children %q; want QEMU and two virtiofsd", before)
	}
	if left := children(t); len(left) > 0 {
		t.Errorf("processes outlived Close: %q", left)
	}
	select {
	case <-vm.Done():
	default:
		t.Error("Done is open after Close")
	}
}

// TestContextEndsVM checks that ending Start's context ends the VM and
// removes its files.
func TestContextEndsVM(t *testing.T) {
	needVMM(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	vmctx, vmcancel := context.WithCancel(ctx)
	vm, err := Start(vmctx, Config{Accel: AccelOff})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Kill()
	if vm.Accel() != "tcg" {
		t.Errorf("Accel() = %q under AccelOff; want tcg", vm.Accel())
	}
	vmcancel()
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := vm.Wait(wctx); wctx.Err() != nil {
		t.Fatalf("the VM did not end within 10s of its context: %v", err)
	}
	if _, err := os.Stat(vm.dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the VM's directory outlived it: %v", err)
	}
	if _, err := vm.Command(ctx, "true").Output(); err == nil {
		t.Error("a command ran in an ended VM")
	}
}

// TestBootErrorFromOutside checks that a failed boot is a *BootError with
// the guest's console, matched with errors.As through the public names.
func TestBootErrorFromOutside(t *testing.T) {
	needVMM(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// panic=-1 reboots at once on the panic that a missing init causes;
	// the VMM runs with -no-reboot and exits.
	_, err := Start(ctx, Config{Accel: AccelOff, Append: []string{"rdinit=/nonexistent", "panic=-1"}})
	var be *BootError
	if !errors.As(err, &be) || !errors.Is(err, ErrExited) {
		t.Fatalf("Start = %v; want a *BootError matching ErrExited", err)
	}
	if !strings.Contains(be.Console, "Kernel panic") {
		t.Errorf("BootError.Console lacks the panic:\n%s", be.Console)
	}
}

// TestShareRoot boots the host's own root, shared read-only, as vmexec
// does: the guest runs the host's programs, reads its files, writes a
// writable share through, and its other writes stay in the guest.
func TestShareRoot(t *testing.T) {
	needVMM(t)
	for _, sharing := range sharings(t) {
		t.Run(string(sharing), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			work := t.TempDir()
			if err := os.WriteFile(filepath.Join(work, "in"), []byte("host file\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			stray := filepath.Join(t.TempDir(), "stray")
			vm, err := Start(ctx, Config{
				Root: "/", ShareRoot: true, Sharing: sharing,
				Shares: []Share{{HostDir: work, GuestPath: work, Writable: true}},
			})
			if err != nil {
				t.Fatal(err)
			}
			defer vm.Kill()
			// The host's sh, not busybox: /bin/sh is the host's.
			script := "cat " + work + "/in; echo out > " + work + "/out; echo x > " + stray + "; cat " + stray + "; readlink -f /proc/1/root"
			out, err := vm.Command(ctx, "/bin/sh", "-c", script).CombinedOutput()
			if err != nil {
				t.Fatalf("command: %v\n%s", err, out)
			}
			if want := "host file\nx\n/\n"; string(out) != want {
				t.Errorf("guest printed %q, want %q", out, want)
			}
			if b, err := os.ReadFile(filepath.Join(work, "out")); err != nil || string(b) != "out\n" {
				t.Errorf("the writable share on the host: %q, %v", b, err)
			}
			if _, err := os.Stat(stray); err == nil {
				t.Errorf("a write to the shared root reached the host: %s", stray)
			}
			vm.Kill()
		})
	}
}

// children are the processes whose parent is this one (Linux; none
// elsewhere).
func children(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var kids []string
	me := strconv.Itoa(os.Getpid())
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid …; comm may hold blanks.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && f[1] == me {
			kids = append(kids, s[:i+1])
		}
	}
	return kids
}
