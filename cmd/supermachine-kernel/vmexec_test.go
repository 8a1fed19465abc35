package main

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/supermachine-go/supermachine-kernel/internal/qemu"
)

func TestExecutableArch(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if a, err := executableArch(exe); err != nil || a != runtime.GOARCH {
		t.Errorf("executableArch(test binary) = %q, %v; want %s", a, err, runtime.GOARCH)
	}
	script := filepath.Join(t.TempDir(), "script")
	os.WriteFile(script, []byte("#!/bin/sh\n"), 0o755)
	if _, err := executableArch(script); err == nil || !strings.Contains(err.Error(), "not a Linux executable") {
		t.Errorf("executableArch(script) error %v", err)
	}
}

func TestParseBindMount(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		in    string
		want  bindMount
		error string
	}{
		{dir, bindMount{host: dir, guest: dir}, ""},
		{dir + ":rw", bindMount{host: dir, guest: dir, rw: true}, ""},
		{dir + ":/data", bindMount{host: dir, guest: "/data"}, ""},
		{dir + ":/data:rw", bindMount{host: dir, guest: "/data", rw: true}, ""},
		{dir + ":/data:ro", bindMount{host: dir, guest: "/data"}, ""},
		{"relative:/data", bindMount{}, "absolute"},
		{dir + "/missing", bindMount{}, "not a directory"},
		{dir + ":/a:/b:rw", bindMount{}, "want HOST[:GUEST][:rw]"},
	} {
		got, err := parseBindMount(tc.in)
		if tc.error != "" {
			if err == nil || !strings.Contains(err.Error(), tc.error) {
				t.Errorf("parseBindMount(%q) error %v, want %q", tc.in, err, tc.error)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseBindMount(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func TestGuestEnv(t *testing.T) {
	got := guestEnv([]string{"PATH=/usr/bin", "SSH_AUTH_SOCK=/tmp/agent", "GOFLAGS=-v", "DISPLAY=:0", "HOME=/root"})
	if strings.Join(got, " ") != "PATH=/usr/bin GOFLAGS=-v HOME=/root" {
		t.Errorf("guestEnv = %q", got)
	}
}

func TestVMExecConfigFile(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, ".git"), 0o755)
	sub := filepath.Join(dir, "pkg", "x")
	os.MkdirAll(sub, 0o755)
	t.Chdir(sub)
	if c, p, err := loadVMExecConfig(); err != nil || p != "" || c.Memory != 0 {
		t.Fatalf("no file: %+v %q %v", c, p, err)
	}
	file := filepath.Join(dir, vmexecConfigFile)
	os.WriteFile(file, []byte("memory = 2048\ncpus = 1\nappend = [\"loglevel=7\"]\nkvm = \"off\"\n"), 0o644)
	c, p, err := loadVMExecConfig()
	if err != nil || p != file || c.Memory != 2048 || c.CPUs != 1 || c.KVM != "off" || len(c.Append) != 1 {
		t.Fatalf("file: %+v %q %v", c, p, err)
	}
	os.WriteFile(file, []byte("root = true\nshare = \"9p\"\n"), 0o644)
	if c, _, err := loadVMExecConfig(); err != nil || !c.Root || c.Share != "9p" {
		t.Fatalf("root and share: %+v %v", c, err)
	}
	os.WriteFile(file, []byte("memroy = 2048\n"), 0o644)
	if _, _, err := loadVMExecConfig(); err == nil || !strings.Contains(err.Error(), `unknown setting "memroy"`) {
		t.Errorf("misspelt setting: %v", err)
	}
}

// go test -exec 'supermachine-kernel vmexec --' in a module of its own
// (in a directory whose path has a blank and a colon),
// with tests that need a kernel (a network namespace, a tmpfs mount, a
// cgroup), one that fails, -run, -v, -count and -coverprofile, for the
// test binary's arch: amd64 and arm64 whatever the host.
func TestVMExecGoTest(t *testing.T) {
	if testing.Short() {
		t.Skip("boots guests")
	}
	if errVMExecUnsupported != nil {
		t.Skip(errVMExecUnsupported)
	}
	if os.Geteuid() != 0 {
		t.Skip("vmexec shares files over virtio-fs, which needs root")
	}
	if _, err := os.Stat("/usr/lib/qemu/virtiofsd"); err != nil {
		t.Fatal("virtiofsd not installed: apt-get install qemu-system-common")
	}
	dir := t.TempDir()
	cli := filepath.Join(dir, "supermachine-kernel")
	if out, err := exec.Command("go", "build", "-o", cli, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	// A blank and a colon in the working directory: the shared paths
	// reach the guest as data, not as kernel command line words.
	mod := filepath.Join(dir, "mod with: space")
	os.Mkdir(mod, 0o755)
	os.WriteFile(filepath.Join(mod, "go.mod"), []byte("module example.com/vmtest\n\ngo 1.22\n"), 0o644)
	os.WriteFile(filepath.Join(mod, "vm_test.go"), []byte(vmTestSource), 0o644)
	for _, arch := range []string{"amd64", "arm64"} {
		t.Run(arch, func(t *testing.T) {
			bin, pkg, _ := qemu.Binary(arch)
			if _, err := exec.LookPath(bin); err != nil {
				t.Fatalf("%s not installed: apt-get install %s", bin, pkg)
			}
			gotest := func(args ...string) (string, error) {
				// Two vCPUs whatever the host has: TestKernelRewritesItsCode
				// needs a second CPU running the code the first rewrites.
				cmd := exec.Command("go", append([]string{"test", "-exec", cli + " vmexec -cpus 2 --"}, args...)...)
				cmd.Dir = mod
				cmd.Env = append(os.Environ(), "GOARCH="+arch, "GOWORK=off", "GOFLAGS=", "VMTEST_WANT_ARCH="+arch, "VMTEST_SHARE=virtiofs")
				out, err := cmd.CombinedOutput()
				return string(out), err
			}
			out, err := gotest("-run", "TestKernel|TestOutput", "-v", "-count=2", "-coverprofile=cover.out", ".")
			if err != nil {
				t.Fatalf("go test: %v\n%s", err, out)
			}
			for _, want := range []string{"--- PASS: TestKernelNetns", "--- PASS: TestKernelTmpfs", "--- PASS: TestKernelCgroup", "--- PASS: TestKernelOpenUnlinkFstat", "--- PASS: TestKernelFileHandles", "--- PASS: TestKernelRewritesItsCode", "--- PASS: TestOutput", "coverage:"} {
				if strings.Count(out, want) < 2 && want != "coverage:" || !strings.Contains(out, want) {
					t.Errorf("output lacks %q (twice for -count=2):\n%s", want, out)
				}
			}
			if strings.Contains(out, "TestFails") {
				t.Errorf("-run ran TestFails:\n%s", out)
			}
			if b, err := os.ReadFile(filepath.Join(mod, "cover.out")); err != nil || !strings.HasPrefix(string(b), "mode: ") {
				t.Errorf("cover.out: %v %q", err, b)
			}
			if b, err := os.ReadFile(filepath.Join(mod, "written-in-guest-"+arch)); err != nil || string(b) != arch {
				t.Errorf("file written in the guest's working directory: %v %q", err, b)
			}
			out, err = gotest("-run", "TestFails", "-count=1", ".")
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
				t.Errorf("failing test: go test error %v, want exit status 1\n%s", err, out)
			}
			if !strings.Contains(out, "--- FAIL: TestFails") || !strings.Contains(out, "deliberate failure") {
				t.Errorf("failing test output:\n%s", out)
			}
		})
	}
}

const vmTestSource = `package vmtest

import (
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

func inGuest(t *testing.T) {
	b, _ := os.ReadFile("/proc/self/mounts")
	if !strings.Contains(string(b), "supermachine-") {
		t.Fatalf("not in a vmexec guest (no share of the host): %s", b)
	}
	if want := os.Getenv("VMTEST_WANT_ARCH"); runtime.GOARCH != want {
		t.Fatalf("GOARCH %s, want %s", runtime.GOARCH, want)
	}
}

func TestKernelNetns(t *testing.T) {
	inGuest(t)
	runtime.LockOSThread() // the thread ends in another namespace: never unlocked
	before, _ := os.Readlink("/proc/thread-self/ns/net")
	if err := syscall.Unshare(syscall.CLONE_NEWNET); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Readlink("/proc/thread-self/ns/net")
	if before == after {
		t.Fatalf("still in %s", before)
	}
}

func TestKernelTmpfs(t *testing.T) {
	inGuest(t)
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	defer syscall.Unmount(dir, 0)
	if err := os.WriteFile(filepath.Join(dir, "f"), make([]byte, 2<<20), 0o644); err == nil {
		t.Fatal("wrote 2 MiB into a 1 MiB tmpfs")
	}
}

func TestKernelCgroup(t *testing.T) {
	inGuest(t)
	root := "/sys/fs/cgroup"
	if _, err := os.Stat(filepath.Join(root, "cgroup.procs")); err != nil {
		if err := syscall.Mount("cgroup2", root, "cgroup2", 0, ""); err != nil {
			t.Fatal(err)
		}
	}
	cg := filepath.Join(root, "vmtest-"+strconv.Itoa(os.Getpid()))
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cg, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile("/proc/self/cgroup")
	if !strings.Contains(string(b), filepath.Base(cg)) {
		t.Fatalf("/proc/self/cgroup = %q", b)
	}
	os.WriteFile(filepath.Join(root, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0o644)
	os.Remove(cg)
}

// Test suites open a file, unlink it and keep using it (9p breaks this;
// virtio-fs must not): on the writable share and in the overlay's /tmp.
func TestKernelOpenUnlinkFstat(t *testing.T) {
	inGuest(t)
	wd, _ := os.Getwd()
	for _, dir := range []string{wd, t.TempDir()} {
		p := filepath.Join(dir, "unlinked-"+strconv.Itoa(os.Getpid()))
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString("still here"); err != nil {
			t.Fatalf("%s: write after unlink: %v", dir, err)
		}
		st, err := f.Stat()
		if err != nil || st.Size() != 10 {
			t.Fatalf("%s: fstat after unlink: %v, %v", dir, st, err)
		}
		b := make([]byte, 10)
		if _, err := f.ReadAt(b, 0); err != nil || string(b) != "still here" {
			t.Fatalf("%s: read after unlink: %q, %v", dir, b, err)
		}
		f.Close()
	}
}

// File handles work on the overlay root as on the host, again after the
// file was closed; on the shared working directory they work while the
// guest holds the file (virtiofsd forgets a node the guest dropped, and
// the call then fails with ESTALE: see the README).
func TestKernelFileHandles(t *testing.T) {
	inGuest(t)
	if os.Getenv("VMTEST_SHARE") == "9p" {
		// An overlay on a 9p lower has no file handles (see the README).
		nr := map[string]uintptr{"amd64": 303, "arm64": 264}[runtime.GOARCH]
		var fh [8 + 128]byte
		fh[0] = 128
		name, _ := syscall.BytePtrFromString("/")
		var mountID int32
		atFDCWD := -100
		_, _, e := syscall.Syscall6(nr, uintptr(atFDCWD), uintptr(unsafe.Pointer(name)), uintptr(unsafe.Pointer(&fh[0])), uintptr(unsafe.Pointer(&mountID)), 0, 0)
		if e != syscall.EOPNOTSUPP {
			t.Fatalf("name_to_handle_at(/) on a 9p root: %v, want EOPNOTSUPP (update the README)", e)
		}
		return
	}
	wd, _ := os.Getwd()
	held, err := os.Open("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	for _, p := range []string{"/", "/etc", filepath.Join(wd, "go.mod")} {
		var st syscall.Stat_t
		if err := syscall.Stat(p, &st); err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if ino := openByHandle(t, p); ino != st.Ino {
				t.Fatalf("%s: open_by_handle_at #%d opened inode %d, want %d", p, i+1, ino, st.Ino)
			}
		}
	}
}

// openByHandle opens path through name_to_handle_at and open_by_handle_at
// and returns the inode number of what it opened.
func openByHandle(t *testing.T, path string) uint64 {
	nr := map[string][2]uintptr{"amd64": {303, 304}, "arm64": {264, 265}}[runtime.GOARCH]
	const maxHandle = 128
	// struct file_handle: handle_bytes, handle_type, f_handle[]; both
	// arches are little-endian.
	var fh [8 + maxHandle]byte
	fh[0] = maxHandle
	name, _ := syscall.BytePtrFromString(path)
	atFDCWD := -100
	var mountID int32
	if _, _, e := syscall.Syscall6(nr[0], uintptr(atFDCWD), uintptr(unsafe.Pointer(name)), uintptr(unsafe.Pointer(&fh[0])), uintptr(unsafe.Pointer(&mountID)), 0, 0); e != 0 {
		t.Fatalf("%s: name_to_handle_at: %v", path, e)
	}
	mount, err := os.Open(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	defer mount.Close()
	fd, _, e := syscall.Syscall(nr[1], mount.Fd(), uintptr(unsafe.Pointer(&fh[0])), syscall.O_RDONLY)
	if e != 0 {
		t.Fatalf("%s: open_by_handle_at: %v", path, e)
	}
	defer syscall.Close(int(fd))
	var st syscall.Stat_t
	if err := syscall.Fstat(int(fd), &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// The first socket asking for SO_TIMESTAMP turns on a static key of
// the kernel and closing the last turns it off: each flip rewrites code
// that the receive path runs, and UDP on loopback keeps the other CPU in
// that path. Under QEMU's software emulation with a thread per vCPU, an
// amd64 guest died here within a second (Oops: int3).
func TestKernelRewritesItsCode(t *testing.T) {
	inGuest(t)
	if n := runtime.NumCPU(); n < 2 {
		t.Fatalf("%d CPU; the test needs 2", n)
	}
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	done := make(chan int)
	go func() {
		buf := make([]byte, 16)
		n := 0
		for {
			select {
			case <-done:
				done <- n
				return
			default:
			}
			c.WriteToUDP([]byte("x"), c.LocalAddr().(*net.UDPAddr))
			c.SetReadDeadline(time.Now().Add(time.Second))
			if _, _, err := c.ReadFromUDP(buf); err == nil {
				n++
			}
		}
	}()
	const flips = 150
	for i := 0; i < flips; i++ {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_TIMESTAMP, 1); err != nil {
			t.Fatal(err)
		}
		syscall.Close(fd)
		// The key goes off from a work item: give it time to run.
		time.Sleep(2 * time.Millisecond)
	}
	done <- 0
	if n := <-done; n == 0 {
		t.Fatal("no datagram came back over loopback")
	} else {
		t.Logf("%d key flips with %d datagrams received on %d CPUs", flips, n, runtime.NumCPU())
	}
}

func TestOutput(t *testing.T) {
	inGuest(t)
	if err := os.WriteFile("written-in-guest-"+runtime.GOARCH, []byte(runtime.GOARCH), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("/etc/vmtest", []byte("x"), 0o644); err != nil {
		t.Fatalf("the overlay root should take writes: %v", err)
	}
}

// The test runs as the uid and gid vmexec was asked for, and what it
// writes lands on the host as the invoking user's.
func TestAsUser(t *testing.T) {
	inGuest(t)
	if uid, gid := strconv.Itoa(os.Getuid()), strconv.Itoa(os.Getgid()); uid != os.Getenv("VMTEST_WANT_UID") || gid != os.Getenv("VMTEST_WANT_GID") {
		t.Fatalf("running as %s:%s, want %s:%s", uid, gid, os.Getenv("VMTEST_WANT_UID"), os.Getenv("VMTEST_WANT_GID"))
	}
	if err := os.WriteFile("written-as-user-"+runtime.GOARCH, []byte(runtime.GOARCH), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("/etc/vmtest", []byte("x"), 0o644); err == nil {
		t.Fatal("a normal user wrote to /etc")
	}
}

func TestAsRoot(t *testing.T) {
	inGuest(t)
	if os.Getuid() != 0 {
		t.Fatalf("running as uid %d, want root", os.Getuid())
	}
	if err := os.WriteFile("written-as-root-"+runtime.GOARCH, []byte(runtime.GOARCH), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestFails(t *testing.T) {
	t.Fatal("deliberate failure")
}
`

// Bad -share values and directories that cannot be shared are refused
// before anything boots, naming what was wrong.
func TestVMExecRefuses(t *testing.T) {
	if errVMExecUnsupported != nil {
		t.Skip(errVMExecUnsupported)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir())
	var stderr strings.Builder
	err = cmdVMExec(t.Context(), []string{"-share", "nfs", exe}, io.Discard, &stderr)
	if err == nil || !strings.Contains(err.Error(), `-share "nfs": want auto, virtiofs or 9p`) {
		t.Errorf("-share nfs: %v", err)
	}
	// A directory that cannot be listed cannot be shared.
	locked := filepath.Join(t.TempDir(), "locked")
	os.Mkdir(locked, 0o000)
	if os.Geteuid() != 0 {
		err = cmdVMExec(t.Context(), []string{"-mount", locked + ":/x", exe}, io.Discard, &stderr)
		if err == nil || !strings.Contains(err.Error(), "cannot share "+locked+" with the guest") {
			t.Errorf("-mount of a directory this user cannot list: %v", err)
		}
	}
	// The working directory becomes writable in the guest: / is refused.
	t.Chdir("/")
	err = cmdVMExec(t.Context(), []string{exe}, io.Discard, &stderr)
	if err == nil || !strings.Contains(err.Error(), "the working directory is /") {
		t.Errorf("run from /: %v", err)
	}
}
