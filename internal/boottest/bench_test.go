package boottest

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cavaliergopher/cpio"

	"github.com/supermachine-go/supermachine-kernel/internal/qemu"
	"github.com/supermachine-go/supermachine-kernel/kernel"
)

// AnchorEnv, with the arch appended (SUPERMACHINE_ANCHOR_KERNEL_AMD64,
// SUPERMACHINE_ANCHOR_KERNEL_ARM64), names a Debian cloud kernel (vmlinuz)
// to boot as the anchor of BenchmarkBoot. Get them with
//
//	dpkg --add-architecture arm64 && apt-get update
//	apt-get download linux-image-6.12.117+deb12-cloud-amd64-unsigned linux-image-6.12.117+deb12-cloud-arm64-unsigned:arm64
//	for d in linux-image-*.deb; do dpkg-deb -x $d anchor; done
//	export SUPERMACHINE_ANCHOR_KERNEL_AMD64=$PWD/anchor/boot/vmlinuz-6.12.117+deb12-cloud-amd64
//	export SUPERMACHINE_ANCHOR_KERNEL_ARM64=$PWD/anchor/boot/vmlinuz-6.12.117+deb12-cloud-arm64
//
// Without it, /boot/vmlinuz-*-cloud-<arch> is used if present.
const AnchorEnv = "SUPERMACHINE_ANCHOR_KERNEL"

// reservedRE finds the kernel's reserved memory in its boot line
// "Memory: 218000K/262144K available (…, 37000K reserved, 0K cma-reserved)".
var reservedRE = regexp.MustCompile(`Memory: \d+K/\d+K available \(.*?(\d+)K reserved`)

var readyRE = regexp.MustCompile(`supermachine-agent \S+ ready .*uptime=([0-9.]+)s`)
var initRE = regexp.MustCompile(`BOOTTEST-INIT uptime=([0-9.]+)`)

// BenchmarkBoot boots each arch b.N times (run with -benchtime=10x) and
// reports the guest uptime when the agent is ready and the host wall time
// from starting QEMU to the reply of the first exec, as median and spread
// (max - min). The root image is zstd-compressed squashfs (the first exec
// reads busybox from it). The "init" variants boot to a busybox /init
// that prints its uptime and ends the guest; "init-debian-cloud" boots the
// bundled kernel and Debian's cloud kernel, the anchor (see AnchorEnv), in
// turns on the same QEMU machine and CPU model and reports their ratio
// (init-p50-ratio, bundled / anchor). Uptime starts when the kernel's
// clock does, after a bzImage has decompressed itself: init-wall is the
// host time from starting QEMU to the /init's line on the console.
//
// The "agent-mitigations-off" variants boot with mitigations=off. With
// SUPERMACHINE_COMPARE_KERNEL_AMD64 (or _ARM64) naming another kernel image
// of that arch, "agent-compare" boots it and the bundled kernel in turns,
// with the same initramfs and root, so the two are compared under the same
// load in one run (ready-p50-ratio is bundled / other); for the kernel of
// an earlier commit:
//
//	git show c218b28:kernel-amd64/kernel.xz | xz -dc > /tmp/old-amd64
//	SUPERMACHINE_COMPARE_KERNEL_AMD64=/tmp/old-amd64 go test -run '^$' -bench 'BenchmarkBoot/amd64/agent' -benchtime 10x ./internal/boottest/
//
// The agent variants also report the guest memory when the agent is ready
// (256 MiB guest): in use (MemTotal - MemFree), available (MemAvailable),
// and what the kernel reserved at boot (its image, page tables and early
// allocations, which MemTotal leaves out; from the boot log's "Memory:"
// line). SUPERMACHINE_BENCH_CMDLINE
// adds words to the kernel command line of every agent variant (say,
// acpi=off, to measure what probing for absent ACPI tables costs), and
// SUPERMACHINE_BENCH_CONSOLE=DIR writes the console and /proc/meminfo of
// each variant's last boot to DIR (with loglevel=8 initcall_debug in SUPERMACHINE_BENCH_CMDLINE,
// its timestamps show where the boot time goes).
func BenchmarkBoot(b *testing.B) {
	for _, arch := range []string{"amd64", "arm64"} {
		b.Run(arch+"/agent", func(b *testing.B) { benchAgentBoot(b, arch, "") })
		b.Run(arch+"/agent-mitigations-off", func(b *testing.B) { benchAgentBoot(b, arch, "", "mitigations=off") })
		b.Run(arch+"/agent-compare", func(b *testing.B) {
			env := "SUPERMACHINE_COMPARE_KERNEL_" + strings.ToUpper(arch)
			k := os.Getenv(env)
			if k == "" {
				b.Skipf("set %s to a kernel image to compare with", env)
			}
			benchAgentBoot(b, arch, k)
		})
	}
	for _, arch := range []string{"amd64", "arm64"} {
		b.Run(arch+"/userspace", func(b *testing.B) { benchUserSpace(b, arch) })
	}
	for _, arch := range []string{"amd64", "arm64"} {
		b.Run(arch+"/init", func(b *testing.B) { benchInitBoot(b, arch, "") })
		b.Run(arch+"/init-debian-cloud", func(b *testing.B) {
			env := AnchorEnv + "_" + strings.ToUpper(arch)
			k := os.Getenv(env)
			if k == "" {
				m, _ := filepath.Glob("/boot/vmlinuz-*-cloud-" + arch)
				if len(m) == 0 {
					b.Skipf("no anchor kernel: set %s (see AnchorEnv)", env)
				}
				k = m[len(m)-1]
			}
			benchInitBoot(b, arch, k)
		})
	}
}

// benchAgentBoot boots the agent guest of arch b.N times with the bundled
// kernel, with extra command-line words. If compareKernel is set, each
// iteration also boots that kernel image with the same initramfs and
// root, the two in turns (which goes first alternates), so that both see
// the same machine load; its figures are reported with a "compare-"
// prefix, and the bundled kernel's median agent-ready uptime divided by
// the other's as ready-p50-ratio.
func benchAgentBoot(b *testing.B, arch, compareKernel string, extraCmdline ...string) {
	needToolsB(b, arch)
	ctx := context.Background()
	dir := b.TempDir()
	im, err := MakeImages(ctx, arch, dir, nil, "zstd")
	if err != nil {
		b.Fatal(err)
	}
	kernels := []string{im.Kernel}
	if compareKernel != "" {
		kernels = append(kernels, compareKernel)
	}
	extraCmdline = append(extraCmdline, strings.Fields(os.Getenv("SUPERMACHINE_BENCH_CMDLINE"))...)
	ready := make([][]float64, len(kernels))
	wall := make([][]float64, len(kernels))
	mem := make([][]guestMemory, len(kernels))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := range kernels {
			k := (i + j) % len(kernels)
			im.Kernel = kernels[k]
			r, w, m := agentBootOnce(b, im, dir, k, i == b.N-1, extraCmdline)
			ready[k] = append(ready[k], r)
			wall[k] = append(wall[k], w)
			mem[k] = append(mem[k], m)
		}
	}
	b.StopTimer()
	for k := range kernels {
		prefix := ""
		if k > 0 {
			prefix = "compare-"
		}
		report(b, prefix+"ready-uptime", ready[k])
		report(b, prefix+"first-exec-wall", wall[k])
		var used, avail, reserved []float64
		for _, m := range mem[k] {
			used, avail, reserved = append(used, m.usedMiB), append(avail, m.availableMiB), append(reserved, m.reservedMiB)
		}
		b.ReportMetric(median(used), prefix+"mem-used-MiB")
		b.ReportMetric(median(avail), prefix+"mem-available-MiB")
		b.ReportMetric(median(reserved), prefix+"kernel-reserved-MiB")
	}
	if len(kernels) > 1 {
		b.ReportMetric(median(ready[0])/median(ready[1]), "ready-p50-ratio")
	}
}

// agentBootOnce boots im once and returns the guest uptime when the agent
// was ready and the host wall time to the first exec's answer (ms), and
// the guest's memory. With save set and
// SUPERMACHINE_BENCH_CONSOLE naming a directory, it writes the console and
// /proc/meminfo there, named after the benchmark and kernel index k.
func agentBootOnce(b *testing.B, im *Images, dir string, k int, save bool, extraCmdline []string) (ready, wall float64, mem guestMemory) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	g, err := Boot(ctx, im, dir, false, extraCmdline...)
	if err != nil {
		b.Fatal(err)
	}
	defer g.Close()
	if err := g.Client.Command(ctx, "true").Run(); err != nil {
		b.Fatal(err)
	}
	wall = float64(time.Since(g.VM.Started()).Microseconds()) / 1000
	if mem, err = readGuestMemory(ctx, g); err != nil {
		b.Fatal(err)
	}
	if d := os.Getenv("SUPERMACHINE_BENCH_CONSOLE"); d != "" && save {
		f := filepath.Join(d, strings.ReplaceAll(b.Name(), "/", "_")+"-"+strconv.Itoa(k))
		meminfo, err := g.Shell(ctx, "cat /proc/meminfo /proc/vmstat")
		if err != nil {
			b.Fatal(err)
		}
		if err := errors.Join(os.WriteFile(f+".console", []byte(g.VM.Console()), 0o644),
			os.WriteFile(f+".meminfo", []byte(meminfo), 0o644)); err != nil {
			b.Fatal(err)
		}
	}
	m := readyRE.FindStringSubmatch(g.VM.Console())
	if m == nil {
		b.Fatalf("no ready line on the console:\n%s", g.VM.Console())
	}
	up, _ := strconv.ParseFloat(m[1], 64)
	return math.Round(up * 1000), wall, mem
}

// median is the middle value of v, or the mean of the two middle ones.
func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + m) / 2
	}
	return m
}

// guestMemory is what a guest says of its memory, in MiB.
type guestMemory struct {
	usedMiB      float64 // MemTotal - MemFree
	availableMiB float64 // MemAvailable
	reservedMiB  float64 // reserved at boot, from the "Memory:" line
}

// readGuestMemory reads the guest's /proc/meminfo and the boot log's
// "Memory:" line (dmesg keeps it under quiet too).
func readGuestMemory(ctx context.Context, g *Guest) (guestMemory, error) {
	out, err := g.Shell(ctx, "cat /proc/meminfo; dmesg | grep 'Memory: '")
	if err != nil {
		return guestMemory{}, err
	}
	kb := map[string]float64{}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 {
			v, _ := strconv.ParseFloat(f[1], 64)
			kb[strings.TrimSuffix(f[0], ":")] = v
		}
	}
	if kb["MemTotal"] == 0 || kb["MemAvailable"] == 0 {
		return guestMemory{}, fmt.Errorf("no MemTotal or MemAvailable in /proc/meminfo: %q", out)
	}
	m := reservedRE.FindStringSubmatch(out)
	if m == nil {
		return guestMemory{}, fmt.Errorf("no \"Memory: …K reserved\" line in the guest's dmesg: %q", out)
	}
	reserved, _ := strconv.ParseFloat(m[1], 64)
	return guestMemory{
		usedMiB:      (kb["MemTotal"] - kb["MemFree"]) / 1024,
		availableMiB: kb["MemAvailable"] / 1024,
		reservedMiB:  reserved / 1024,
	}, nil
}

// CompareInitrdEnv, suffixed with _AMD64 or _ARM64, names another
// initramfs of that arch (say, one built by the initramfs package of an
// earlier commit) for the userspace variant to boot in turns with the
// current one.
const CompareInitrdEnv = "SUPERMACHINE_COMPARE_INITRD"

// benchUserSpace measures the user-space part of the boot: in each
// iteration, in rotating order, it boots the bundled kernel into the
// busybox /init of benchInitBoot, into the agent initramfs, and, with
// CompareInitrdEnv_<ARCH> set, into that other initramfs, all in the same
// machine (devices, command line, root image). It reports each one's median uptime, the
// agent-ready medians minus the busybox /init median (userspace-p50-ms:
// what the init and the agent add), and the agent's RSS after its first
// exec (agent-rss-KiB, VmRSS of PID 1). A guest under TCG runs tens of
// percent faster or slower from one boot to the next on a loaded machine:
// take enough iterations, and note the load. Figures of the other initramfs
// carry a "compare-" prefix. For the shell-init initramfs of an earlier
// commit, build it there with initramfs.Build and the embedded busybox
// and agent, then:
//
//	SUPERMACHINE_COMPARE_INITRD_AMD64=/tmp/old-amd64.cpio go test -run '^$' -bench 'BenchmarkBoot/amd64/userspace' -benchtime 10x ./internal/boottest/
func benchUserSpace(b *testing.B, arch string) {
	needToolsB(b, arch)
	ctx := context.Background()
	dir := b.TempDir()
	im, err := MakeImages(ctx, arch, dir, nil, "zstd")
	if err != nil {
		b.Fatal(err)
	}
	busyboxInit := filepath.Join(dir, "busybox-init.cpio.gz")
	if err := writeUptimeInitramfs(busyboxInit, im.Busybox); err != nil {
		b.Fatal(err)
	}
	initrds := []string{im.Initrd}
	if other := os.Getenv(CompareInitrdEnv + "_" + strings.ToUpper(arch)); other != "" {
		initrds = append(initrds, other)
	}
	extra := strings.Fields(os.Getenv("SUPERMACHINE_BENCH_CMDLINE"))
	n := len(initrds) + 1 // the last turn is busybox's
	ready := make([][]float64, len(initrds))
	rss := make([][]float64, len(initrds))
	var initUp []float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := range n {
			k := (i + j) % n
			if k == len(initrds) {
				initUp = append(initUp, initBootOnce(b, im, dir, busyboxInit, extra))
				continue
			}
			im.Initrd = initrds[k]
			r, kib := userSpaceBootOnce(b, im, dir, extra)
			ready[k] = append(ready[k], r)
			rss[k] = append(rss[k], kib)
		}
	}
	b.StopTimer()
	report(b, "init-uptime", initUp)
	for k := range initrds {
		prefix := ""
		if k > 0 {
			prefix = "compare-"
		}
		report(b, prefix+"ready-uptime", ready[k])
		b.ReportMetric(median(ready[k])-median(initUp), prefix+"userspace-p50-ms")
		b.ReportMetric(median(rss[k]), prefix+"agent-rss-KiB")
	}
}

// userSpaceBootOnce boots im and returns the agent-ready uptime (ms) and
// the agent's VmRSS (KiB) after its first exec.
func userSpaceBootOnce(b *testing.B, im *Images, dir string, extra []string) (ready, rssKiB float64) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	g, err := Boot(ctx, im, dir, false, extra...)
	if err != nil {
		b.Fatal(err)
	}
	defer g.Close()
	out, err := g.Shell(ctx, "grep VmRSS /proc/1/status")
	if err != nil {
		b.Fatal(err)
	}
	if f := strings.Fields(out); len(f) < 2 {
		b.Fatalf("VmRSS of PID 1: %q", out)
	} else if rssKiB, err = strconv.ParseFloat(f[1], 64); err != nil {
		b.Fatalf("VmRSS of PID 1: %q", out)
	}
	m := readyRE.FindStringSubmatch(g.VM.Console())
	if m == nil {
		b.Fatalf("no ready line on the console:\n%s", g.VM.Console())
	}
	up, _ := strconv.ParseFloat(m[1], 64)
	return math.Round(up * 1000), rssKiB
}

// initBootOnce boots the machine of im (same devices, same command line)
// into the busybox /init of initrd and returns the uptime (ms) it printed.
func initBootOnce(b *testing.B, im *Images, dir, initrd string, extra []string) float64 {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := Config(im, dir, false, extra...)
	cfg.Initrd = initrd
	vm, err := qemu.Start(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	err = vm.Wait(ctx)
	m := initRE.FindStringSubmatch(vm.Console())
	if m == nil {
		b.Fatalf("no uptime line (err %v):\n%s", err, vm.Console())
	}
	u, _ := strconv.ParseFloat(m[1], 64)
	return u * 1000
}

// benchInitBoot boots the bundled kernel of arch into a busybox-only
// initramfs whose /init prints the uptime and ends the guest. With
// anchorKernel set it boots that kernel image too, the two in turns (which
// goes first alternates), and reports the ratio of their median uptimes.
func benchInitBoot(b *testing.B, arch, anchorKernel string) {
	needToolsB(b, arch)
	ctx := context.Background()
	dir := b.TempDir()
	im, err := MakeImages(ctx, arch, dir, nil, "zstd")
	if err != nil {
		b.Fatal(err)
	}
	initrd := filepath.Join(dir, "busybox-init.cpio.gz")
	if err := writeUptimeInitramfs(initrd, im.Busybox); err != nil {
		b.Fatal(err)
	}
	kernels := []string{im.Kernel}
	if anchorKernel != "" {
		kernels = append(kernels, anchorKernel)
	}
	up := make([][]float64, len(kernels))
	wall := make([][]float64, len(kernels))
	emulated := false
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := range kernels {
			k := (i + j) % len(kernels)
			cfg := qemu.Config{Arch: arch, Kernel: kernels[k], Initrd: initrd}
			if k > 0 {
				cfg.Cmdline = anchorCmdline(arch, emulated)
			}
			u, w, accel := timedInitBoot(b, cfg)
			if k == 0 {
				emulated = accel == qemu.TCG
			}
			up[k] = append(up[k], u)
			wall[k] = append(wall[k], w)
		}
	}
	b.StopTimer()
	report(b, "init-uptime", up[0])
	report(b, "init-wall", wall[0])
	if len(kernels) > 1 {
		report(b, "anchor-init-uptime", up[1])
		report(b, "anchor-init-wall", wall[1])
		b.ReportMetric(median(up[0])/median(up[1]), "init-p50-ratio")
		b.ReportMetric(median(wall[0])/median(wall[1]), "init-wall-p50-ratio")
	}
}

// anchorCmdline is the command line the anchor kernel boots with: what
// the bundled kernel gets on the same machine, but without the acpi=off
// pci=off the x86-64 microvm adds: Debian's kernel stops after "PCI:
// Fatal: No config space access function found" with either, and boots
// without them. emulated comes from the bundled kernel's boot, which goes
// first in the first round.
func anchorCmdline(arch string, emulated bool) string {
	return kernel.CommandLine(kernel.CommandLineOptions{Arch: arch, Emulated: emulated})
}

// timedInitBoot boots cfg to the uptime /init and returns the guest uptime
// the /init printed and the host time from starting QEMU to that line
// (ms), and the accelerator QEMU used.
func timedInitBoot(b *testing.B, cfg qemu.Config) (up, wall float64, accel string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	line := &lineTimer{marker: []byte("BOOTTEST-INIT uptime=")}
	cfg.Console = line
	vm, err := qemu.Start(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	err = vm.Wait(ctx)
	m := initRE.FindStringSubmatch(vm.Console())
	seen := line.seenAt()
	if m == nil || seen.IsZero() {
		b.Fatalf("%s: no uptime line (err %v):\n%s", cfg.Kernel, err, vm.Console())
	}
	u, _ := strconv.ParseFloat(m[1], 64)
	return u * 1000, float64(seen.Sub(vm.Started()).Microseconds()) / 1000, vm.Accel()
}

// lineTimer is a console writer that notes when marker first appears.
type lineTimer struct {
	marker []byte
	mu     sync.Mutex
	tail   []byte
	at     time.Time
}

func (l *lineTimer) Write(p []byte) (int, error) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.at.IsZero() {
		// Keep just enough of the earlier output to find a marker
		// split across writes.
		l.tail = append(l.tail, p...)
		if bytes.Contains(l.tail, l.marker) {
			l.at = now
		}
		if n := len(l.marker); len(l.tail) > n {
			l.tail = l.tail[len(l.tail)-n:]
		}
	}
	return len(p), nil
}

func (l *lineTimer) seenAt() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.at
}

// writeUptimeInitramfs writes a busybox initramfs whose /init prints the
// uptime at its start and then ends the guest.
func writeUptimeInitramfs(path string, busybox []byte) error {
	script := `#!/bin/sh
/bin/busybox mount -t proc proc /proc
read up idle < /proc/uptime
/bin/busybox mount -t devtmpfs dev /dev
exec 0<>/dev/console 1>&0 2>&0
echo "BOOTTEST-INIT uptime=$up"
/bin/busybox reboot -f
`
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	cw := cpio.NewWriter(zw)
	for _, e := range []struct {
		name string
		mode cpio.FileMode
		data string
	}{
		{"bin", cpio.TypeDir | 0o755, ""}, {"proc", cpio.TypeDir | 0o755, ""}, {"dev", cpio.TypeDir | 0o755, ""},
		{"bin/busybox", cpio.TypeReg | 0o755, string(busybox)},
		{"bin/sh", cpio.TypeSymlink | 0o777, "busybox"},
		{"init", cpio.TypeReg | 0o755, script},
	} {
		if err := cw.WriteHeader(&cpio.Header{Name: e.name, Mode: e.mode, Size: int64(len(e.data))}); err != nil {
			return err
		}
		if _, err := cw.Write([]byte(e.data)); err != nil {
			return err
		}
	}
	if err := cw.Close(); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

func report(b *testing.B, name string, ms []float64) {
	if len(ms) == 0 {
		return
	}
	s := slices.Clone(ms)
	slices.Sort(s)
	b.ReportMetric(median(s), name+"-p50-ms")
	b.ReportMetric(s[len(s)-1]-s[0], name+"-spread-ms")
	b.Logf("%s ms: %s", name, fmt.Sprint(s))
}

func needToolsB(b *testing.B, arch string) {
	b.Helper()
	bin, pkg, _ := qemu.Binary(arch)
	for tool, p := range map[string]string{bin: pkg, "mksquashfs": "squashfs-tools", "mkfs.ext4": "e2fsprogs"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Skipf("%s not installed (Debian package %s)", tool, p)
		}
	}
}
