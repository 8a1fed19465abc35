package boottest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/supermachine-go/supermachine-kernel/agent"
	"github.com/supermachine-go/supermachine-kernel/internal/poll"
	"github.com/supermachine-go/supermachine-kernel/internal/qemu"
)

// bootTimeout bounds one arch's whole boot test (software emulation on a
// busy two-core machine is slow; a healthy run takes seconds).
const bootTimeout = 4 * time.Minute

func needTools(t *testing.T, arch string) {
	t.Helper()
	bin, pkg, _ := qemu.Binary(arch)
	for tool, p := range map[string]string{bin: pkg, "mksquashfs": "squashfs-tools", "mkfs.ext4": "e2fsprogs", "go": "golang"} {
		if _, err := exec.LookPath(tool); err != nil {
			if testing.Short() {
				t.Skipf("%s not installed (Debian package %s)", tool, p)
			}
			t.Fatalf("%s not installed: apt-get install %s (or run the tests with -short to skip boot tests)", tool, p)
		}
	}
}

func TestBootAMD64(t *testing.T) { testBoot(t, "amd64") }
func TestBootARM64(t *testing.T) { testBoot(t, "arm64") }

func testBoot(t *testing.T, arch string) {
	needTools(t, arch)
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	dir := t.TempDir()
	vc, err := BuildVsockClient(ctx, arch, dir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := MakeImages(ctx, arch, dir, vc, "")
	if err != nil {
		t.Fatal(err)
	}
	g, err := Boot(ctx, im, dir, true, "supermachine.allow_any_cid=1", "supermachine.frobnicate=1")
	if err != nil {
		t.Fatal(err)
	}
	poweredOff := false
	defer func() {
		if t.Failed() {
			t.Logf("--- %s console ---\n%s", arch, g.VM.Console())
		}
		if !poweredOff {
			g.VM.Kill()
		}
	}()
	t.Logf("%s: agent answered %v after QEMU started", arch, g.Ready.Round(time.Millisecond))

	sh := func(script string) string {
		t.Helper()
		out, err := g.Shell(ctx, script)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}

	t.Run("uname", func(t *testing.T) {
		out, err := g.Client.Command(ctx, "uname", "-r").Output()
		if err != nil {
			t.Fatal(err)
		}
		if rel := strings.TrimSpace(string(out)); !strings.HasPrefix(rel, "6.12.") {
			t.Errorf("uname -r = %q, want 6.12.x", rel)
		}
		m, _ := g.Client.Command(ctx, "uname", "-m").Output()
		want := map[string]string{"amd64": "x86_64", "arm64": "aarch64"}[arch]
		if strings.TrimSpace(string(m)) != want {
			t.Errorf("uname -m = %q, want %s", m, want)
		}
	})
	t.Run("stdin", func(t *testing.T) {
		cmd := g.Client.Command(ctx, "wc", "-c")
		cmd.Stdin = strings.NewReader(strings.Repeat("x", 100000))
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(string(out)) != "100000" {
			t.Errorf("wc -c of 100000 bytes of stdin = %q", out)
		}
	})
	t.Run("exit code", func(t *testing.T) {
		err := g.Client.Command(ctx, "sh", "-c", "exit 7").Run()
		var ee *agent.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 7 {
			t.Errorf("exit 7: err = %v", err)
		}
	})
	t.Run("tty", func(t *testing.T) {
		cmd := g.Client.Command(ctx, "stty", "size")
		cmd.TTY, cmd.Rows, cmd.Cols = true, 33, 101
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(string(out)) != "33 101" {
			t.Errorf("stty size on a 33x101 tty = %q", out)
		}
	})
	t.Run("file round trip", func(t *testing.T) {
		data := bytes.Repeat([]byte("supermachine\n"), 50000)
		if err := g.Client.WriteFile(ctx, "/root/file.txt", bytes.NewReader(data), 0o640, nil); err != nil {
			t.Fatal(err)
		}
		got, err := g.Client.ReadFile(ctx, "/root/file.txt")
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			t.Errorf("read back %d bytes, wrote %d", len(got), len(data))
		}
		if mode := sh("stat -c %a /root/file.txt 2>/dev/null || ls -l /root/file.txt"); !strings.Contains(mode, "640") && !strings.HasPrefix(mode, "-rw-r-----") {
			t.Errorf("mode of written file: %q", mode)
		}
	})

	// The kernel features the config promises, each shown by use.
	t.Run("squashfs root under a writable overlay", func(t *testing.T) {
		mounts := sh("cat /proc/mounts")
		if !regexp.MustCompile(`(?m)^overlay / overlay .*lowerdir=`).MatchString(mounts) {
			t.Errorf("/ is not an overlay:\n%s", mounts)
		}
		if out := sh("echo written > /new-file && cat /new-file"); out != "written\n" {
			t.Errorf("write to /: %q", out)
		}
		if out := sh("mkdir -p /mnt/sq && mount -t squashfs -o ro /dev/vda /mnt/sq && cat /mnt/sq/etc/marker && umount /mnt/sq"); out != "supermachine squashfs root\n" {
			t.Errorf("squashfs /dev/vda: %q", out)
		}
	})
	t.Run("ext4 on the second disk", func(t *testing.T) {
		out := sh("mkdir -p /mnt/data && mount -t ext4 /dev/vdb /mnt/data && cat /mnt/data/hello.txt && echo ok > /mnt/data/w && cat /mnt/data/w && umount /mnt/data")
		if out != "hello from ext4\nok\n" {
			t.Errorf("ext4: %q", out)
		}
	})
	t.Run("vsock loopback", func(t *testing.T) {
		out, err := g.Shell(ctx, "vsockexec 1 1024 uname -r")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(out, "6.12.") {
			t.Errorf("uname -r over vsock loopback: %q", out)
		}
	})
	t.Run("virtio-net", func(t *testing.T) {
		out := sh("ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && ip link show eth0 && cat /sys/class/net/eth0/device/modalias 2>/dev/null; true")
		if !strings.Contains(out, "eth0") || !strings.Contains(out, "UP") {
			t.Errorf("eth0: %q", out)
		}
	})
	t.Run("virtiofs and fuse registered", func(t *testing.T) {
		fs := sh("cat /proc/filesystems")
		for _, want := range []string{"\tvirtiofs\n", "\tfuse\n", "\toverlay\n", "\tsquashfs\n", "\text4\n", "\tdevpts\n", "\tcgroup2\n"} {
			if !strings.Contains(fs, want) {
				t.Errorf("/proc/filesystems lacks %q", strings.TrimSpace(want))
			}
		}
	})
	t.Run("no module loading", func(t *testing.T) {
		out := sh("test -e /proc/modules && echo modules; test -e /proc/sys/kernel/modprobe && echo modprobe; true")
		if out != "" {
			t.Errorf("module support present: %q", out)
		}
	})
	t.Run("console", func(t *testing.T) {
		out := sh("cat /proc/consoles")
		want := map[string]string{"amd64": "ttyS0", "arm64": "ttyAMA0"}[arch]
		if !strings.Contains(out, want) {
			t.Errorf("/proc/consoles: %q, want %s", out, want)
		}
		if c := g.VM.Console(); !strings.Contains(c, "supermachine-agent") || !strings.Contains(c, "ready") {
			t.Errorf("the console did not carry the agent's ready line:\n%s", c)
		}
		// An unknown supermachine.* parameter is reported and ignored.
		if c, want := g.VM.Console(), "unknown parameter supermachine.frobnicate ignored"; !strings.Contains(c, want) {
			t.Errorf("the console lacks %q:\n%s", want, c)
		}
	})
	t.Run("clock", func(t *testing.T) { testGuestClock(ctx, t, g, arch, dir) })
	t.Run("no zombies", func(t *testing.T) {
		// The orphaned sleeps are re-parented to the agent (PID 1) and
		// must be reaped when they exit.
		sh("for i in 1 2 3 4 5; do (sleep 0.1 &) ; done")
		time.Sleep(time.Second)
		out := sh(`for f in /proc/[0-9]*/stat; do read -r line < "$f" 2>/dev/null && case "$line" in *") Z "*) echo "$line";; esac; done; true`)
		if out != "" {
			t.Errorf("zombies remain:\n%s", out)
		}
	})

	// Power off: QEMU must exit by itself.
	if err := g.Client.PowerOff(ctx); err != nil && !errors.Is(err, io.EOF) {
		t.Logf("PowerOff: %v (the connection may drop as the guest goes down)", err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 60*time.Second)
	defer wcancel()
	if err := g.VM.Wait(wctx); err != nil && errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("QEMU still runs 60s after PowerOff")
	}
	poweredOff = true
}

// A broken boot must say what failed and end the guest, not hang: a
// missing root device, a malformed parameter.
func TestInitFailurePowersOff(t *testing.T) {
	for _, arch := range []string{"amd64", "arm64"} {
		for _, tt := range []struct {
			name   string
			append []string
			want   string
		}{
			{"no root device", []string{"supermachine.root=/dev/vdz", "supermachine.rootwait=1"},
				"supermachine-init: FATAL: root device /dev/vdz did not appear within 1s"},
			{"mount without target", []string{"supermachine.mount=/dev/vdb"},
				"supermachine-init: FATAL: kernel command line parameter supermachine.mount=/dev/vdb: "},
		} {
			t.Run(arch+"/"+tt.name, func(t *testing.T) {
				needTools(t, arch)
				ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
				defer cancel()
				dir := t.TempDir()
				im, err := MakeImages(ctx, arch, dir, nil, "")
				if err != nil {
					t.Fatal(err)
				}
				vm, err := qemu.Start(ctx, qemu.Config{
					Arch: arch, Kernel: im.Kernel, Initrd: im.Initrd, Append: tt.append,
					Disks: []qemu.Disk{{Path: im.Root, ReadOnly: true}},
				})
				if err != nil {
					t.Fatal(err)
				}
				wctx, wcancel := context.WithTimeout(ctx, 90*time.Second)
				defer wcancel()
				if err := vm.Wait(wctx); errors.Is(err, context.DeadlineExceeded) {
					vm.Kill()
					t.Fatalf("the guest did not end after a failed boot:\n%s", vm.Console())
				}
				if c := vm.Console(); !strings.Contains(c, tt.want) {
					t.Errorf("console lacks %q:\n%s", tt.want, c)
				}
			})
		}
	}
}

// With supermachine.rescue=1 a failed init gives a busybox shell on the
// serial console, and the guest powers off when it exits.
func TestInitFailureRescueShell(t *testing.T) {
	for _, arch := range []string{"amd64", "arm64"} {
		t.Run(arch, func(t *testing.T) {
			needTools(t, arch)
			ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
			defer cancel()
			dir := t.TempDir()
			im, err := MakeImages(ctx, arch, dir, nil, "")
			if err != nil {
				t.Fatal(err)
			}
			// The commands are typed once the shell prompts (input
			// that comes earlier may be flushed); the pipe stays open
			// until QEMU has exited.
			in, typed, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer in.Close()
			defer typed.Close()
			vm, err := qemu.Start(ctx, qemu.Config{
				Arch: arch, Kernel: im.Kernel, Initrd: im.Initrd, ConsoleInput: in,
				Append: []string{"supermachine.root=/dev/vdz", "supermachine.rootwait=1", "supermachine.rescue=1"},
				Disks:  []qemu.Disk{{Path: im.Root, ReadOnly: true}},
			})
			if err != nil {
				t.Fatal(err)
			}
			wctx, wcancel := context.WithTimeout(ctx, 90*time.Second)
			defer wcancel()
			if err := poll.Until(wctx, poll.Peer, "the rescue shell's prompt", func() (bool, error) {
				return strings.Contains(vm.Console(), "rescue# "), nil
			}); err != nil {
				vm.Kill()
				t.Fatalf("%v:\n%s", err, vm.Console())
			}
			if _, err := typed.WriteString("echo RESCUE-$((6*7)) $(ls /supermachine)\nexit\n"); err != nil {
				t.Fatal(err)
			}
			if err := vm.Wait(wctx); errors.Is(err, context.DeadlineExceeded) {
				vm.Kill()
				t.Fatalf("the guest did not end after the rescue shell exited:\n%s", vm.Console())
			}
			c := vm.Console()
			for _, want := range []string{"supermachine-init: FATAL: root device /dev/vdz", "supermachine-init: rescue shell", "RESCUE-42 init.conf", "supermachine-init: rescue shell ended"} {
				if !strings.Contains(c, want) {
					t.Errorf("console lacks %q:\n%s", want, c)
				}
			}
		})
	}
}
