package microvm

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/supermachine-go/supermachine-kernel/initramfs"
)

// TestConfigErrors checks that each bad field is refused before anything
// starts, with an error that names it.
func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		field string
		c     Config
	}{
		{"Arch", Config{Arch: "riscv64"}},
		{"MemoryMiB", Config{MemoryMiB: 8}},
		{"MemoryMiB", Config{MemoryMiB: -1}},
		{"CPUs", Config{CPUs: 100000}},
		{"Shape", Config{Shape: Shape(42)}},
		{"Shape", Config{Arch: "amd64", Shape: ShapeVirtualization}},
		{"Accel", Config{Accel: "fast"}},
		{"Kernel", Config{Kernel: filepath.Join(dir, "missing")}},
		{"Kernel", Config{Kernel: dir}},
		{"Append[1]", Config{Append: []string{"quiet", "a b"}}},
		{"Root", Config{Root: filepath.Join(dir, "missing")}},
		{"Root", Config{Root: file}},
		{"Initramfs", Config{Initramfs: initramfs.Settings{RootFSType: "xfs"}}},
		{"Initramfs", Config{Initramfs: initramfs.Settings{OverlaySize: "lots"}}},
		{"Disks[0]", Config{Disks: []Disk{{}}}},
		{"Disks[0]", Config{Disks: []Disk{{Path: file, Format: "vmdk"}}}},
		{"Disks[0]", Config{Disks: []Disk{{Path: filepath.Join(dir, "missing")}}}},
		{"Shares[0]", Config{Shares: []Share{{HostDir: file, GuestPath: "/x"}}}},
		{"Shares[0]", Config{Shares: []Share{{HostDir: dir, GuestPath: "x"}}}},
		{"Shares[0]", Config{Shares: []Share{{HostDir: dir, GuestPath: "/"}}}},
		{"Shares[1]", Config{Shares: []Share{{HostDir: dir, GuestPath: "/x"}, {HostDir: dir, GuestPath: "/x/"}}}},
		{"DTB", Config{DTB: filepath.Join(dir, "missing")}},
		{"Sharing", Config{Sharing: "nfs"}},
		{"ShareRoot", Config{ShareRoot: true}},
		{"ShareRoot", Config{ShareRoot: true, Root: file}},
	} {
		_, err := Start(context.Background(), tc.c)
		var ce *ConfigError
		if !errors.Is(err, ErrBadConfig) || !errors.As(err, &ce) || ce.Field != tc.field || !strings.Contains(err.Error(), "Config."+tc.field+": ") {
			t.Errorf("Start(%+v) = %v; want a ConfigError naming %s", tc.c, err, tc.field)
		}
	}
}

// TestConfigDefaults checks the defaults the zero Config gets.
func TestConfigDefaults(t *testing.T) {
	c, err := Config{}.normalize()
	if err != nil {
		t.Fatal(err)
	}
	if c.MemoryMiB != 256 || c.CPUs != 1 || c.Accel != AccelAuto || c.Arch == "" || c.Shape != ShapeMMIO {
		t.Errorf("defaults: %+v", c)
	}
}

// TestSharingAuto checks that auto means virtio-fs exactly when this
// process may use it, and that virtio-fs is refused, saying why, when it
// may not.
func TestSharingAuto(t *testing.T) {
	c, err := Config{Sharing: SharingAuto}.normalize()
	if err != nil {
		t.Fatal(err)
	}
	usable := virtiofsUsable()
	if want := map[bool]Sharing{true: SharingVirtioFS, false: Sharing9P}[usable == nil]; c.Sharing != want {
		t.Errorf("auto became %s; want %s (virtio-fs usable: %v)", c.Sharing, want, usable)
	}
	if _, err := (Config{Sharing: SharingVirtioFS}).normalize(); usable != nil && !errors.Is(err, ErrBadConfig) {
		t.Errorf("virtio-fs where it cannot work: %v; want a ConfigError", err)
	}
	if c, _ := (Config{}).normalize(); c.Sharing != Sharing9P {
		t.Errorf("default sharing %s; want 9p", c.Sharing)
	}
}

// TestOtherArchNotLinked checks that the other arch is refused, naming
// the remedy, when microvm/allarch is not imported.
func TestOtherArchNotLinked(t *testing.T) {
	other := map[string]string{"amd64": "arm64", "arm64": "amd64"}[runtime.GOARCH]
	_, err := Start(context.Background(), Config{Arch: other})
	if !errors.Is(err, ErrBadConfig) || !strings.Contains(err.Error(), "microvm/allarch") {
		t.Errorf("Start(Arch: %s) = %v; want ErrBadConfig naming microvm/allarch", other, err)
	}
}
