package main

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/supermachine-go/supermachine-kernel/internal/qemu"
)

// testUser is a normal user that runs go test.
type testUser struct {
	name     string
	uid, gid int
	home     string
	env      []string
	asRoot   bool // made by this test, which runs as root
}

// unprivilegedUser returns the invoking user if it is not root; as root,
// it makes a user with its own home (and in it the Go caches and the
// asset cache) and removes it when the test ends.
func unprivilegedUser(t *testing.T) *testUser {
	goroot, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		t.Fatalf("go env GOROOT: %v", err)
	}
	path := filepath.Join(strings.TrimSpace(string(goroot)), "bin") + ":/usr/local/bin:/usr/bin:/bin"
	if os.Geteuid() != 0 {
		home := t.TempDir()
		me, _ := user.Current()
		return &testUser{name: me.Username, uid: os.Getuid(), gid: os.Getgid(), home: home, env: userEnv(home, path)}
	}
	// Root's home is not readable to others: the user's files live in a
	// directory of their own.
	base, err := os.MkdirTemp("", "vmexec-user-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("smk%d", os.Getpid())
	home := filepath.Join(base, "home")
	if out, err := exec.Command("useradd", "--create-home", "--home-dir", home, "--user-group", "--shell", "/bin/sh", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("userdel", name).CombinedOutput(); err != nil {
			t.Errorf("userdel %s: %v\n%s", name, err, out)
		}
	})
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &testUser{name: name, uid: uid, gid: gid, home: home, env: userEnv(home, path), asRoot: true}
}

// userEnv is a login-like environment whose caches are all in home.
func userEnv(home, path string) []string {
	return []string{
		"HOME=" + home, "PATH=" + path, "TMPDIR=/tmp",
		"GOCACHE=" + filepath.Join(home, ".cache", "go-build"),
		"GOPATH=" + filepath.Join(home, "go"), "GOMODCACHE=" + filepath.Join(home, "go", "pkg", "mod"),
		"GOTOOLCHAIN=local", "GOWORK=off", "GOFLAGS=", "GOPROXY=off",
	}
}

// runAs makes cmd run as u.
func (u *testUser) runAs(cmd *exec.Cmd) {
	if u.asRoot {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(u.uid), Gid: uint32(u.gid)}}
	}
}

// chownAll gives everything in u's home to u.
func (u *testUser) chownAll(t *testing.T) {
	if !u.asRoot {
		return
	}
	err := filepath.WalkDir(u.home, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, u.uid, u.gid)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// checkOwned checks that path starts with prefix and belongs to u.
func (u *testUser) checkOwned(t *testing.T, path, prefix string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil || !strings.HasPrefix(string(b), prefix) {
		t.Errorf("%s: %v %q, want it to start with %q", path, err, b, prefix)
		return
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if int(st.Uid) != u.uid || int(st.Gid) != u.gid {
		t.Errorf("%s belongs to %d:%d on the host, want %s's %d:%d", path, st.Uid, st.Gid, u.name, u.uid, u.gid)
	}
}

// go test -exec vmexec as a normal user, over 9p: as the invoking user by
// default (-run, -count, -coverprofile, a file written in the package
// directory, owned by that user on the host), as root in the guest with
// -root and with root = true in the settings file (the kernel tests,
// and files still owned by the invoking user), and a failing test's exit
// code. As root, the test makes such a user, with its own home, Go
// caches, asset cache and package directory.
func TestVMExecGoTestUnprivileged(t *testing.T) {
	if testing.Short() {
		t.Skip("boots guests")
	}
	if errVMExecUnsupported != nil {
		t.Skip(errVMExecUnsupported)
	}
	u := unprivilegedUser(t)
	cli := filepath.Join(u.home, "bin", "supermachine-kernel")
	os.MkdirAll(filepath.Dir(cli), 0o755)
	if out, err := exec.Command("go", "build", "-o", cli, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	mod := filepath.Join(u.home, "mod with: space")
	os.Mkdir(mod, 0o755)
	os.WriteFile(filepath.Join(mod, "go.mod"), []byte("module example.com/vmtest\n\ngo 1.22\n"), 0o644)
	os.WriteFile(filepath.Join(mod, "vm_test.go"), []byte(vmTestSource), 0o644)
	u.chownAll(t)
	if u.asRoot {
		// A directory the user cannot read is named before anything boots.
		private := filepath.Join(filepath.Dir(u.home), "root only")
		os.Mkdir(private, 0o700)
		cmd := exec.Command(cli, "vmexec", "-mount", private, "--", cli)
		cmd.Dir, cmd.Env = mod, u.env
		u.runAs(cmd)
		if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "cannot share "+private+" with the guest: open "+private+": permission denied") {
			t.Errorf("-mount of a directory the user cannot read: %v\n%s", err, out)
		}
	}
	// A /dev/kvm the user may not open: vmexec says how to get access and
	// uses TCG.
	kvmHint := false
	if fi, err := os.Stat("/dev/kvm"); err == nil && u.asRoot && fi.Mode().Perm()&0o006 != 0o006 && fi.Sys().(*syscall.Stat_t).Gid != uint32(u.gid) {
		kvmHint = true
	}
	for _, arch := range []string{"amd64", "arm64"} {
		t.Run(arch, func(t *testing.T) {
			bin, pkg, _ := qemu.Binary(arch)
			if _, err := exec.LookPath(bin); err != nil {
				t.Fatalf("%s not installed: apt-get install %s", bin, pkg)
			}
			gotest := func(vmexecFlags string, args ...string) (string, error) {
				cmd := exec.Command("go", append([]string{"test", "-exec", cli + " vmexec " + vmexecFlags + "--"}, args...)...)
				cmd.Dir = mod
				cmd.Env = append(u.env, "GOARCH="+arch, "VMTEST_WANT_ARCH="+arch, "VMTEST_SHARE=9p",
					"VMTEST_WANT_UID="+strconv.Itoa(u.uid), "VMTEST_WANT_GID="+strconv.Itoa(u.gid))
				u.runAs(cmd)
				out, err := cmd.CombinedOutput()
				return string(out), err
			}
			out, err := gotest("", "-run", "TestAsUser", "-v", "-count=2", "-coverprofile=cover.out", ".")
			if err != nil {
				t.Fatalf("go test as %s: %v\n%s", u.name, err, out)
			}
			if n := strings.Count(out, "--- PASS: TestAsUser"); n != 2 || !strings.Contains(out, "coverage:") {
				t.Errorf("want TestAsUser passing twice and a coverage line:\n%s", out)
			}
			if strings.Contains(out, "TestFails") || strings.Contains(out, "TestKernel") {
				t.Errorf("-run TestAsUser ran other tests:\n%s", out)
			}
			u.checkOwned(t, filepath.Join(mod, "cover.out"), "mode: ")
			u.checkOwned(t, filepath.Join(mod, "written-as-user-"+arch), arch)

			out, err = gotest("-root -v ", "-run", "TestFails|TestAsRoot", "-count=1", ".")
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
				t.Errorf("failing test: go test error %v, want exit status 1\n%s", err, out)
			}
			if !strings.Contains(out, "--- FAIL: TestFails") || strings.Contains(out, "--- FAIL: TestAsRoot") {
				t.Errorf("want TestFails failing and TestAsRoot passing:\n%s", out)
			}
			u.checkOwned(t, filepath.Join(mod, "written-as-root-"+arch), arch)
			if kvmHint && arch == runtime.GOARCH && (!strings.Contains(out, "/dev/kvm: permission denied: ") || !strings.Contains(out, "usermod -aG kvm")) {
				t.Errorf("no word on getting access to /dev/kvm:\n%s", out)
			}

			settings := filepath.Join(mod, vmexecConfigFile)
			if err := os.WriteFile(settings, []byte("root = true\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			defer os.Remove(settings)
			os.Remove(filepath.Join(mod, "written-as-root-"+arch))
			// Two vCPUs whatever the host has, for TestKernelRewritesItsCode.
			out, err = gotest("-cpus 2 ", "-run", "TestKernel|TestAsRoot", "-v", "-count=1", ".")
			if err != nil {
				t.Fatalf("go test with root = true: %v\n%s", err, out)
			}
			for _, want := range []string{"--- PASS: TestKernelNetns", "--- PASS: TestKernelTmpfs", "--- PASS: TestKernelCgroup", "--- PASS: TestKernelOpenUnlinkFstat", "--- PASS: TestKernelFileHandles", "--- PASS: TestKernelRewritesItsCode", "--- PASS: TestAsRoot"} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
			u.checkOwned(t, filepath.Join(mod, "written-as-root-"+arch), arch)
		})
	}
}
