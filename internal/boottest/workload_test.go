package boottest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/supermachine-go/supermachine-kernel/internal/rootfs"
)

// workloadTimeout bounds one arch's workload test: two boots and the
// feature checks, under software emulation on a busy machine.
const workloadTimeout = 8 * time.Minute

// The kernel features that container runtimes, networking tools and
// debuggers use inside a guest, each proven by use in a booted guest of
// both arches (tools/kernel/POLICY.md lists the groups).
func TestWorkloadAMD64(t *testing.T) { testWorkload(t, "amd64") }
func TestWorkloadARM64(t *testing.T) { testWorkload(t, "arm64") }

func testWorkload(t *testing.T, arch string) {
	needTools(t, arch)
	ctx, cancel := context.WithTimeout(context.Background(), workloadTimeout)
	defer cancel()
	dir := t.TempDir()
	probe, err := buildGuestProbe(ctx, arch, dir)
	if err != nil {
		t.Fatal(err)
	}
	var probe386 []byte
	if arch == "amd64" {
		if probe386, err = buildGuestProbe(ctx, "386", dir); err != nil {
			t.Fatal(err)
		}
	}
	im, err := MakeImages(ctx, arch, dir, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	squash := map[string][]byte{}
	for _, comp := range []string{"gzip", "lz4", "lzo"} {
		if squash[comp], err = squashfsImage(ctx, dir, comp); err != nil {
			t.Fatal(err)
		}
	}
	loopExt4, err := ext4Image(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	committed, err := os.ReadFile(filepath.Join("..", "..", "kernel-"+arch, "kernel.config"))
	if err != nil {
		t.Fatal(err)
	}

	g, err := Boot(ctx, im, dir, false)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if t.Failed() {
			t.Logf("--- %s console ---\n%s", arch, g.VM.Console())
		}
		if !closed {
			g.Close()
		}
	}()
	sh := func(t *testing.T, script string) string {
		t.Helper()
		out, err := g.Shell(ctx, script)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	put := func(path string, data []byte, mode os.FileMode) {
		t.Helper()
		if err := g.Client.WriteFile(ctx, path, bytes.NewReader(data), mode, nil); err != nil {
			t.Fatalf("write %s: %v", path, err)
		}
	}
	put("/run/guestprobe", probe, 0o755)
	for comp, img := range squash {
		put("/run/sq-"+comp+".img", img, 0o644)
	}
	put("/run/loop.ext4", loopExt4, 0o644)
	if probe386 != nil {
		put("/run/guestprobe386", probe386, 0o755)
	}

	// --- container runtime ---
	t.Run("cgroup v2 limits and CPU throttling", func(t *testing.T) {
		out := sh(t, `grep -q ' /sys/fs/cgroup cgroup2 ' /proc/mounts || mount -t cgroup2 cgroup2 /sys/fs/cgroup
cd /sys/fs/cgroup
echo "controllers: $(cat cgroup.controllers)"
echo "+cpu +io +memory +pids +hugetlb +cpuset" > cgroup.subtree_control
mkdir -p sm && cd sm
echo "10000 100000" > cpu.max
echo "$(cat /sys/block/vda/dev) rbps=1048576 wiops=100" > io.max
echo 67108864 > memory.max
echo 32 > pids.max
echo "cpu.max: $(cat cpu.max)"
echo "io.max: $(cat io.max)"
echo "memory.max: $(cat memory.max)"
echo "pids.max: $(cat pids.max)"
sh -c 'echo $$ > /sys/fs/cgroup/sm/cgroup.procs; exec timeout 2 sh -c "while :; do :; done"'
cat cpu.stat
echo "cpu.pressure: $(head -n1 cpu.pressure)"
`)
		// Freeze in a step of its own, and thaw: the cgroup must not hold
		// anything of the step that reads the output.
		out += sh(t, `cd /sys/fs/cgroup/sm && echo 1 > cgroup.freeze && grep frozen cgroup.events; echo 0 > cgroup.freeze`)
		dev := strings.TrimSpace(sh(t, "cat /sys/block/vda/dev"))
		for _, want := range []string{
			"cpu.max: 10000 100000\n",
			"io.max: " + dev + " rbps=1048576 wbps=max riops=max wiops=100\n",
			"memory.max: 67108864\n", "pids.max: 32\n", "cpu.pressure: some avg10=", "frozen 1",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("cgroup v2: no %q in:\n%s", want, out)
			}
		}
		m := regexp.MustCompile(`(?m)^controllers: (.*)$`).FindStringSubmatch(out)
		for _, c := range []string{"cpuset", "cpu", "io", "memory", "hugetlb", "pids"} {
			if m == nil || !strings.Contains(" "+m[1]+" ", " "+c+" ") {
				t.Errorf("cgroup v2 controller %s missing: %q", c, m)
			}
		}
		if n := regexp.MustCompile(`(?m)^nr_throttled (\d+)$`).FindStringSubmatch(out); n == nil || n[1] == "0" {
			t.Errorf("a busy loop under cpu.max 10000/100000 was not throttled:\n%s", out)
		}
	})
	t.Run("session keyring", func(t *testing.T) {
		if out := sh(t, "/run/guestprobe keyring sm-test"); !strings.Contains(out, "joined session keyring sm-test") {
			t.Errorf("keyring: %q", out)
		}
	})

	// --- networking ---
	t.Run("netns, veth and bridge: ping across", func(t *testing.T) {
		out := sh(t, `exec 2>&1
/run/guestprobe netns-bridge smtest smbr0 smv0 smv1 10.77.0.1/24 10.77.0.2/24
ls /sys/class/net/smbr0/brif
ping -c 2 -W 5 10.77.0.2
nsenter --net=/run/netns/smtest ping -c 2 -W 5 10.77.0.1
echo "bridge-nf-call-iptables=$(cat /proc/sys/net/bridge/bridge-nf-call-iptables)"`)
		for _, want := range []string{"smv0\n", "bytes from 10.77.0.2", "bytes from 10.77.0.1", "bridge-nf-call-iptables=1"} {
			if !strings.Contains(out, want) {
				t.Errorf("no %q in:\n%s", want, out)
			}
		}
	})
	t.Run("nftables masquerade over netlink", func(t *testing.T) {
		if out := sh(t, "/run/guestprobe nft-masq smnat"); !strings.Contains(out, "table ip smnat chain postrouting (nat) rule masquerade") {
			t.Errorf("nft: %q", out)
		}
	})
	t.Run("tun", func(t *testing.T) {
		out := sh(t, "tunctl -t smtap0 >/dev/null && ip link set smtap0 up && cat /sys/class/net/smtap0/tun_flags")
		flags, err := strconv.ParseUint(strings.TrimPrefix(strings.TrimSpace(out), "0x"), 16, 32)
		if err != nil || flags&0x1002 != 0x1002 { // IFF_TAP | IFF_NO_PI
			t.Errorf("tap device from /dev/net/tun: tun_flags %q", out)
		}
	})
	t.Run("dummy, wireguard and a second routing table", func(t *testing.T) {
		out := sh(t, `ip link add smdummy0 type dummy
ip link add smwg0 type wireguard
ip link set smwg0 up
ip link set smdummy0 up
ip addr add 10.66.0.1/24 dev smdummy0
echo "wg type $(cat /sys/class/net/smwg0/type)"
ip route add 10.88.0.0/24 dev smdummy0 table 100
ip rule add to 10.88.0.0/24 table 100
echo "main: $(ip route show | grep -c 10.88.0.0)"
echo "get: $(ip route get 10.88.0.9)"`)
		for _, want := range []string{"wg type 65534", "main: 0"} {
			if !strings.Contains(out, want) {
				t.Errorf("no %q in:\n%s", want, out)
			}
		}
		if !regexp.MustCompile(`(?m)^get: 10\.88\.0\.9 .*dev smdummy0`).MatchString(out) {
			t.Errorf("10.88.0.9 is not routed through table 100:\n%s", out)
		}
	})

	// --- filesystems ---
	t.Run("binfmt_misc", func(t *testing.T) {
		out := sh(t, `mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
printf '#!/bin/sh\necho "binfmt ran $1"\n' > /run/sminterp && chmod +x /run/sminterp
echo ':smtest:E::smx::/run/sminterp:' > /proc/sys/fs/binfmt_misc/register
echo data > /run/prog.smx && chmod +x /run/prog.smx
/run/prog.smx`)
		if !strings.Contains(out, "binfmt ran /run/prog.smx") {
			t.Errorf("binfmt_misc handler did not run: %q", out)
		}
	})
	t.Run("squashfs gzip, lz4 and lzo on loop devices", func(t *testing.T) {
		for _, comp := range []string{"gzip", "lz4", "lzo"} {
			out := sh(t, fmt.Sprintf("mkdir -p /mnt/sq-%[1]s && mount -t squashfs -o loop,ro /run/sq-%[1]s.img /mnt/sq-%[1]s && cat /mnt/sq-%[1]s/marker", comp))
			if out != "squashfs "+comp+"\n" {
				t.Errorf("%s squashfs: %q", comp, out)
			}
		}
	})
	t.Run("mount -o loop as util-linux does it", func(t *testing.T) {
		out := sh(t, "mkdir -p /mnt/lp && /run/guestprobe loopmount /run/loop.ext4 /mnt/lp ext4 && cat /mnt/lp/hello.txt && echo w > /mnt/lp/w && cat /mnt/lp/w")
		if !strings.HasSuffix(out, "hello from a loop image\nw\n") {
			t.Errorf("loop mount with the device open for writing: %q", out)
		}
	})
	t.Run("ext4 security.capability xattr", func(t *testing.T) {
		out := sh(t, `mkdir -p /mnt/data && mount -t ext4 /dev/vdb /mnt/data && cp /bin/busybox /mnt/data/capbin
/run/guestprobe setcap /mnt/data/capbin
umount /mnt/data && mount -t ext4 /dev/vdb /mnt/data
/run/guestprobe getxattr /mnt/data/capbin security.capability
umount /mnt/data`)
		set := regexp.MustCompile(`setcap: \S+ ([0-9a-f]+)`).FindStringSubmatch(out)
		if set == nil || !strings.HasSuffix(out, "\n"+set[1]+"\n") {
			t.Errorf("security.capability not read back after a remount:\n%s", out)
		}
	})
	// THP starts disabled in guests under 512 MiB; the knob must exist
	// and take madvise.
	t.Run("hugetlbfs and transparent huge pages", func(t *testing.T) {
		out := sh(t, `mkdir -p /mnt/huge && mount -t hugetlbfs none /mnt/huge
echo 4 > /proc/sys/vm/nr_hugepages
grep HugePages_Total /proc/meminfo
echo madvise > /sys/kernel/mm/transparent_hugepage/enabled
cat /sys/kernel/mm/transparent_hugepage/enabled`)
		if !strings.Contains(out, "HugePages_Total:       4") || !strings.Contains(out, "[madvise]") {
			t.Errorf("huge pages: %q", out)
		}
	})

	// --- debugging ---
	t.Run("core dump where core_pattern points", func(t *testing.T) {
		out := sh(t, `mkdir -p /run/cores && echo '/run/cores/core.%e.%p' > /proc/sys/kernel/core_pattern
ulimit -c unlimited
sh -c 'kill -SEGV $$'
ls /run/cores`)
		name := strings.TrimSpace(out)
		if !strings.HasPrefix(name, "core.sh.") {
			t.Fatalf("no core file in /run/cores: %q", out)
		}
		core, err := g.Client.ReadFile(ctx, "/run/cores/"+name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := elf.NewFile(bytes.NewReader(core))
		if err != nil {
			t.Fatalf("core file: %v", err)
		}
		if f.Type != elf.ET_CORE || f.Machine != elfMachineOf(arch) {
			t.Errorf("core file is %v for %v", f.Type, f.Machine)
		}
	})
	t.Run("/proc/config.gz is the committed kernel.config", func(t *testing.T) {
		z, err := g.Client.ReadFile(ctx, "/proc/config.gz")
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(bytes.NewReader(z))
		if err != nil {
			t.Fatal(err)
		}
		running, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		if a, b := configOptions(running), configOptions(committed); a != b {
			t.Errorf("/proc/config.gz (%d bytes) differs from kernel-%s/kernel.config", len(running), arch)
		}
	})

	// --- hardening ---
	t.Run("ASLR, stack protector, BPF JIT", func(t *testing.T) {
		if out := sh(t, "cat /proc/sys/kernel/randomize_va_space"); out != "2\n" {
			t.Errorf("randomize_va_space = %q, want 2", out)
		}
		for _, opt := range []string{"CONFIG_STACKPROTECTOR_STRONG=y", "CONFIG_RANDOMIZE_BASE=y", "CONFIG_VMAP_STACK=y", "CONFIG_HARDENED_USERCOPY=y"} {
			if !bytes.Contains(committed, []byte("\n"+opt+"\n")) {
				t.Errorf("kernel-%s/kernel.config lacks %s", arch, opt)
			}
		}
		if out := sh(t, "cat /proc/sys/net/core/bpf_jit_enable"); out != "1\n" {
			t.Errorf("bpf_jit_enable = %q, want 1", out)
		}
	})
	vulns := sh(t, `cd /sys/devices/system/cpu/vulnerabilities && for f in *; do echo "$f: $(cat $f)"; done`)
	text := sh(t, "grep ' start_kernel$' /proc/kallsyms")
	if arch == "amd64" {
		t.Run("32-bit binary", func(t *testing.T) {
			if out := sh(t, "/run/guestprobe386 arch"); out != "386\n" {
				t.Errorf("32-bit static binary: %q", out)
			}
		})
		t.Run("per-CPU areas in 4 KiB pages (built-in command line)", func(t *testing.T) {
			// The kernel's own command line puts percpu_alloc=page before
			// the VMM's; the per-CPU allocator says which way it went.
			out := sh(t, "cat /proc/cmdline; dmesg | grep 'percpu:'")
			if !strings.HasPrefix(out, "percpu_alloc=page ") || !strings.Contains(out, " 4K pages/cpu ") {
				t.Errorf("per-CPU first chunk not in 4 KiB pages:\n%s", out)
			}
		})
		t.Run("CPU vulnerability mitigations", func(t *testing.T) {
			for _, f := range []string{"spectre_v1", "spectre_v2"} {
				if !regexp.MustCompile(`(?m)^` + f + `: Mitigation`).MatchString(vulns) {
					t.Errorf("%s not mitigated:\n%s", f, vulns)
				}
			}
		})
	}
	t.Logf("%s vulnerabilities:\n%s", arch, vulns)

	// A second boot with mitigations=off: the mitigations go, and the
	// kernel lands at another address (KASLR).
	g.Close()
	closed = true
	g2, err := Boot(ctx, im, filepath.Join(dir, "off"), false, "mitigations=off")
	if err != nil {
		t.Fatal(err)
	}
	defer g2.Close()
	text2, err := g2.Shell(ctx, "grep ' start_kernel$' /proc/kallsyms")
	if err != nil {
		t.Fatal(err)
	}
	vulns2, err := g2.Shell(ctx, `cd /sys/devices/system/cpu/vulnerabilities && for f in *; do echo "$f: $(cat $f)"; done`)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("KASLR", func(t *testing.T) {
		if text == "" || text == text2 {
			t.Errorf("start_kernel at the same address in two boots: %q, %q", text, text2)
		}
	})
	if arch == "amd64" {
		t.Run("mitigations=off", func(t *testing.T) {
			if !regexp.MustCompile(`(?m)^spectre_v2: Vulnerable`).MatchString(vulns2) {
				t.Errorf("spectre_v2 still mitigated with mitigations=off:\n%s", vulns2)
			}
		})
	}
	t.Logf("%s vulnerabilities with mitigations=off:\n%s", arch, vulns2)
}

// buildGuestProbe cross-compiles the guestprobe command (its own module,
// built outside the workspace) for goarch.
func buildGuestProbe(ctx context.Context, goarch, dir string) ([]byte, error) {
	buildMu.Lock()
	defer buildMu.Unlock()
	out, err := filepath.Abs(filepath.Join(dir, "guestprobe-"+goarch))
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, ".")
	cmd.Dir = "guestprobe"
	cmd.Env = append(os.Environ(), "GOWORK=off", "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch)
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build guestprobe for %s: %w\n%s", goarch, err, b)
	}
	return os.ReadFile(out)
}

// squashfsCompID is the compression id in a squashfs superblock.
var squashfsCompID = map[string]uint16{"gzip": 1, "lzo": 3, "xz": 4, "lz4": 5, "zstd": 6}

// squashfsImage makes a squashfs image compressed with comp, holding a
// marker file, and checks its superblock says comp.
func squashfsImage(ctx context.Context, dir, comp string) ([]byte, error) {
	tree := filepath.Join(dir, "sq-"+comp)
	if err := os.MkdirAll(tree, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(tree, "marker"), []byte("squashfs "+comp+"\n"), 0o644); err != nil {
		return nil, err
	}
	img := tree + ".img"
	if err := rootfs.Squashfs(ctx, tree, img, comp); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(img)
	if err != nil {
		return nil, err
	}
	if len(b) < 22 || string(b[:4]) != "hsqs" || binary.LittleEndian.Uint16(b[20:]) != squashfsCompID[comp] {
		return nil, fmt.Errorf("%s: not a %s squashfs image", img, comp)
	}
	return b, nil
}

// ext4Image makes a small ext4 image with a hello.txt.
func ext4Image(ctx context.Context, dir string) ([]byte, error) {
	tree := filepath.Join(dir, "loop-tree")
	if err := os.MkdirAll(tree, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(tree, "hello.txt"), []byte("hello from a loop image\n"), 0o644); err != nil {
		return nil, err
	}
	img := filepath.Join(dir, "loop.ext4")
	if err := run(ctx, "mkfs.ext4", "-q", "-F", "-d", tree, "-E", "root_owner=0:0", img, "4M"); err != nil {
		return nil, err
	}
	return os.ReadFile(img)
}

func elfMachineOf(arch string) elf.Machine {
	if arch == "arm64" {
		return elf.EM_AARCH64
	}
	return elf.EM_X86_64
}

// configOptions is a kernel config's option lines (set and not set),
// without its comments and header.
func configOptions(cfg []byte) string {
	var b strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(cfg))
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "CONFIG_") || (strings.HasPrefix(l, "# CONFIG_") && strings.HasSuffix(l, " is not set")) {
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	return b.String()
}
