package kernel_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"runtime"

	"github.com/supermachine-go/supermachine-kernel/kernel"
)

// The usual start of a VMM: find the three assets in the cache, extracting
// them the first time.
func ExampleCacheAll() {
	// A throwaway cache for the example; programs use the default
	// (SUPERMACHINE_KERNEL_CACHE or the user cache directory).
	dir, _ := os.MkdirTemp("", "cache")
	defer os.RemoveAll(dir)
	os.Setenv(kernel.CacheEnv, dir)
	defer os.Unsetenv(kernel.CacheEnv)

	paths, err := kernel.CacheAll(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(filepath.Base(paths.Kernel) == kernel.Kernel.File())
	fmt.Println(filepath.Base(paths.Busybox), filepath.Base(paths.Agent))
	fmt.Println(filepath.Base(filepath.Dir(paths.Kernel)) == kernel.Kernel.SHA256())
	// Output:
	// true
	// busybox supermachine-agent
	// true
}

func ExampleManifest() {
	m := kernel.Manifest()
	fmt.Println(m.Arch == runtime.GOARCH)
	for _, a := range []kernel.AssetInfo{m.Kernel, m.Busybox, m.Agent} {
		fmt.Println(a.Name, a.Mode, a.Size > a.XZSize)
	}
	// Output:
	// true
	// kernel -rw-r--r-- true
	// busybox -rwxr-xr-x true
	// agent -rwxr-xr-x true
}

func ExampleAsset_ExtractTo() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)

	dest := filepath.Join(dir, kernel.Kernel.File())
	if err := kernel.Kernel.ExtractTo(dest); err != nil {
		log.Fatal(err)
	}
	fi, _ := os.Stat(dest)
	fmt.Println(fi.Size() == kernel.KernelLen, fi.Mode())
	// Output: true -rw-r--r--
}

func ExampleAsset_ExtractTo_errors() {
	err := kernel.Busybox.ExtractTo("/nonexistent/dir/busybox")
	fmt.Println(errors.Is(err, fs.ErrNotExist))
	fmt.Println(err)
	// Output:
	// true
	// extract busybox to /nonexistent/dir/busybox: parent directory /nonexistent/dir does not exist: no such file or directory
}

func ExampleAsset_Bytes() {
	b, err := kernel.Busybox.Bytes()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%q %v\n", b[:4], len(b) == kernel.BusyboxLen)
	// Output: "\x7fELF" true
}

func ExampleAsset_NewReader() {
	r, err := kernel.Agent.NewReader()
	if err != nil {
		log.Fatal(err)
	}
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil { // fails with ErrChecksum if the bytes do not verify
		log.Fatal(err)
	}
	fmt.Println(hex.EncodeToString(h.Sum(nil)) == kernel.Agent.SHA256())
	// Output: true
}

func ExampleCache() {
	dir, _ := os.MkdirTemp("", "cache")
	defer os.RemoveAll(dir)

	// A cache of its own, hashed in full on every call.
	c := kernel.Cache{Dir: dir, Verify: true}
	p, err := c.Path(context.Background(), kernel.Busybox)
	if err != nil {
		log.Fatal(err)
	}
	rel, _ := filepath.Rel(dir, p)
	fmt.Println(rel == filepath.Join(kernel.Busybox.SHA256(), "busybox"))
	// Output: true
}

func ExampleVirtioMMIODevice() {
	fmt.Println(kernel.VirtioMMIODevice(0x1000, 0xd0000000, 5))
	// Output: virtio_mmio.device=0x1000@0xd0000000:5
}

func ExampleCommandLine() {
	// An arm64 guest on Apple's Virtualization.framework: virtio-pci
	// devices, the console on hvc0.
	fmt.Println(kernel.CommandLine(kernel.CommandLineOptions{Arch: "arm64", Shape: kernel.ShapeVirtioConsole},
		"supermachine.vsock_port=1024"))
	// An x86-64 guest under QEMU software emulation, MMIO devices.
	fmt.Println(kernel.CommandLine(kernel.CommandLineOptions{Arch: "amd64", Emulated: true, TSCKHz: 3000000}))
	// Output:
	// console=hvc0 panic=-1 quiet dummy.numdummies=0 supermachine.vsock_port=1024
	// console=ttyS0 reboot=t no_timer_check tsc_early_khz=3000000 noapictimer tsc=reliable panic=-1 quiet dummy.numdummies=0
}

// The kernel file to hand a VMM that loads an uncompressed kernel, such as
// Firecracker: on amd64 the ELF vmlinux derived from the bzImage, on arm64
// the Image itself.
func ExampleVmlinux() {
	dir, _ := os.MkdirTemp("", "vmlinux")
	defer os.RemoveAll(dir)

	path, err := kernel.Cache{Dir: dir}.Path(context.Background(), kernel.Vmlinux)
	if err != nil {
		log.Fatal(err)
	}
	f, _ := os.Open(path)
	defer f.Close()
	magic := make([]byte, 4)
	io.ReadFull(f, magic)
	switch kernel.Arch {
	case "amd64":
		fmt.Println(filepath.Base(path), magic[0] == 0x7f && string(magic[1:]) == "ELF")
	case "arm64":
		fmt.Println("vmlinux", kernel.Vmlinux == kernel.Kernel)
	}
	// Output: vmlinux true
}
