package boottest

// Boots in the machine shape of each kind of VMM the kernels target (see
// qemu.Shape and the README's VMM table): Firecracker on x86-64 (the ELF
// vmlinux through PVH, virtio-mmio), a PCI machine on x86-64 (q35,
// virtio-pci), and Apple Virtualization.framework on arm64 (virtio-pci
// only, no UART, console on hvc0). The MMIO shapes are TestBootAMD64 and
// TestBootARM64.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/supermachine-go/supermachine-kernel/internal/bzimage"
	"github.com/supermachine-go/supermachine-kernel/internal/qemu"
	kernelamd64 "github.com/supermachine-go/supermachine-kernel/kernel-amd64"
)

// needPCI skips a PCI shape when the bundled kernel of arch was built
// without PCI (its committed config says so): the shape cannot boot it.
func needPCI(t *testing.T, arch string) {
	t.Helper()
	cfg, err := os.ReadFile(filepath.Join("..", "..", "kernel-"+arch, "kernel.config"))
	if err != nil {
		t.Fatal(err)
	}
	for _, opt := range []string{"CONFIG_PCI=y", "CONFIG_VIRTIO_PCI=y"} {
		if !regexp.MustCompile(`(?m)^` + opt + `$`).Match(cfg) {
			t.Skipf("the bundled %s kernel has no %s", arch, opt)
		}
	}
}

// writeVmlinux derives the ELF vmlinux from the bundled bzImage in im,
// checks it against the manifest's SHA-256 and writes it into dir.
func writeVmlinux(t *testing.T, im *Images, dir string) string {
	t.Helper()
	bz, err := os.ReadFile(im.Kernel)
	if err != nil {
		t.Fatal(err)
	}
	vm, err := bzimage.Vmlinux(bz, kernelamd64.VmlinuxSize)
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(vm); hex.EncodeToString(sum[:]) != kernelamd64.VmlinuxSHA256 {
		t.Fatalf("vmlinux SHA-256 %x, manifest %s", sum, kernelamd64.VmlinuxSHA256)
	}
	p := filepath.Join(dir, "vmlinux")
	if err := os.WriteFile(p, vm, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// shapeGuest boots arch in shape with the root image, the data disk, a
// network device and the agent channel; prepare may change the config.
func shapeGuest(t *testing.T, ctx context.Context, arch string, shape qemu.Shape, prepare func(*Images, *qemu.Config), extra ...string) *Guest {
	t.Helper()
	needTools(t, arch)
	dir := t.TempDir()
	im, err := MakeImages(ctx, arch, dir, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config(im, dir, true, extra...)
	cfg.Shape = shape
	if prepare != nil {
		prepare(im, &cfg)
	}
	g, err := BootConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- %s %s console ---\n%s", arch, shape, g.VM.Console())
		}
		g.Close()
	})
	t.Logf("%s %s: agent answered %v after QEMU started", arch, shape, g.Ready)
	return g
}

// checkGuest runs what every shape must do: exec, the squashfs root
// (/dev/vda) under the overlay, the ext4 disk (/dev/vdb) read and
// written, and the network device up with an address; each device must
// sit on the bus the shape promises ("pci" or "virtio-mmio"/"LNRO0005"
// platform devices).
func checkGuest(t *testing.T, ctx context.Context, g *Guest, arch, bus string) {
	t.Helper()
	sh := func(script string) string {
		t.Helper()
		out, err := g.Shell(ctx, script)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	out, err := g.Client.Command(ctx, "uname", "-rm").Output()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"amd64": "x86_64", "arm64": "aarch64"}[arch]
	if f := strings.Fields(string(out)); len(f) != 2 || !strings.HasPrefix(f[0], "6.12.") || f[1] != want {
		t.Errorf("uname -rm = %q, want 6.12.x %s", out, want)
	}
	if got := sh("cat /etc/marker && grep -c '^overlay / overlay' /proc/mounts"); got != "supermachine squashfs root\n1\n" {
		t.Errorf("root: marker and overlay count %q", got)
	}
	if got := sh("mkdir -p /mnt/data && mount -t ext4 /dev/vdb /mnt/data && cat /mnt/data/hello.txt && echo w > /mnt/data/w && cat /mnt/data/w && umount /mnt/data"); got != "hello from ext4\nw\n" {
		t.Errorf("ext4 on /dev/vdb: %q", got)
	}
	if got := sh("ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && cat /sys/class/net/eth0/operstate"); strings.TrimSpace(got) != "up" {
		t.Errorf("eth0 operstate %q, want up", got)
	}
	// The devices just used, and the agent's port, are on the shape's bus.
	paths := sh("for d in /sys/block/vda /sys/block/vdb /sys/class/net/eth0 /sys/class/virtio-ports/vport*; do readlink -f $d; done")
	for _, l := range strings.Split(strings.TrimSpace(paths), "\n") {
		onPCI := strings.Contains(l, "/pci")
		if (bus == "pci") != onPCI {
			t.Errorf("device %s is not on %s", l, bus)
		}
	}
	if n := strings.Count(paths, "\n"); n < 4 {
		t.Errorf("found %d of vda, vdb, eth0 and the agent port:\n%s", n, paths)
	}
}

// TestVMMFirecrackerAMD64 boots the Firecracker shape: the ELF vmlinux
// derived from the bzImage (QEMU enters it through its PVH note, as
// Firecracker does), microvm without ACPI, virtio-mmio devices on the
// command line.
func TestVMMFirecrackerAMD64(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	g := shapeGuest(t, ctx, "amd64", qemu.ShapeFirecracker, func(im *Images, c *qemu.Config) {
		c.Kernel = writeVmlinux(t, im, filepath.Dir(im.Kernel))
	})
	checkGuest(t, ctx, g, "amd64", "virtio-mmio")
	// QEMU described the MMIO devices on the command line.
	out, err := g.Shell(ctx, "cat /proc/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out, "virtio_mmio.device="); n < 4 {
		t.Errorf("/proc/cmdline has %d virtio_mmio.device= entries, want 4 (2 disks, serial, net): %q", n, out)
	}
	// The kernel was entered through PVH: its PVH code made the
	// boot_params itself and says boot protocol 2.12 (0x020c at 0x206),
	// where a bzImage boot keeps its own header's 2.15.
	ver, err := g.Shell(ctx, "od -An -tx1 -j 518 -N2 /sys/kernel/boot_params/data")
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(ver) != "0c 02" {
		t.Errorf("boot_params protocol version bytes %q, want \"0c 02\" (set by the PVH entry)", ver)
	}
}

// TestVMMPCIAMD64 boots x86-64 on q35 with every device virtio-pci
// (modern): root disk, data disk, network and the agent's
// virtio-serial port.
func TestVMMPCIAMD64(t *testing.T) {
	needPCI(t, "amd64")
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	g := shapeGuest(t, ctx, "amd64", qemu.ShapePCI, nil)
	checkGuest(t, ctx, g, "amd64", "pci")
}

// TestVMMPCIARM64 boots arm64 on virt with every device virtio-pci
// behind the generic ECAM host bridge.
func TestVMMPCIARM64(t *testing.T) {
	needPCI(t, "arm64")
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	g := shapeGuest(t, ctx, "arm64", qemu.ShapePCI, nil)
	checkGuest(t, ctx, g, "arm64", "pci")
}

// TestVMMVirtualizationFrameworkARM64 boots the shape of Apple's
// Virtualization.framework: arm64 virt with virtio-pci devices only, no
// PL011 in the device tree, the console on hvc0 (port 0 of a
// virtio-serial-pci device) and the agent's port beside it. The boot log
// must arrive through hvc0, the only console.
func TestVMMVirtualizationFrameworkARM64(t *testing.T) {
	needPCI(t, "arm64")
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	g := shapeGuest(t, ctx, "arm64", qemu.ShapeVirtualization, func(im *Images, c *qemu.Config) {
		c.DTB = filepath.Join(filepath.Dir(im.Kernel), "virt-no-uart.dtb")
		if err := qemu.NoUARTDeviceTree(ctx, *c, c.DTB); err != nil {
			t.Fatal(err)
		}
	}, "loglevel=7")
	checkGuest(t, ctx, g, "arm64", "pci")
	out, err := g.Shell(ctx, "cat /proc/consoles; ls /sys/class/tty; ls /proc/device-tree")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "hvc0") {
		t.Errorf("/proc/consoles does not start with hvc0:\n%s", out)
	}
	if strings.Contains(out, "ttyAMA") || strings.Contains(out, "pl011") {
		t.Errorf("the guest has a PL011:\n%s", out)
	}
	// Everything QEMU printed came through hvc0: the kernel's boot log
	// from the moment the virtio console is probed (what the kernel
	// printed before that stays in its ring buffer, read with dmesg),
	// and the agent's ready line.
	con := g.VM.Console()
	for _, want := range []string{"virtio_blk", "Run /init as init process", "supermachine-agent"} {
		if !strings.Contains(con, want) {
			t.Errorf("the hvc0 console lacks %q", want)
		}
	}
	if out, err := g.Shell(ctx, "dmesg | grep -c -e 'Booting Linux on physical CPU' -e pci-host-generic"); err != nil || strings.TrimSpace(out) == "0" {
		t.Errorf("dmesg lacks the early boot log (%v): %q", err, out)
	}
}
