package microvm_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/supermachine-go/supermachine-kernel/internal/modproxy"
	"github.com/supermachine-go/supermachine-kernel/internal/rootfs"
	"github.com/supermachine-go/supermachine-kernel/kernel"
)

const rootModule = "github.com/supermachine-go/supermachine-kernel"

// TestConsumer is what a user of the launcher sees: a throwaway module
// built against this repository's modules as they would be released
// (through a local file module proxy, with an empty module cache) whose
// main boots a VM with the public API on a squashfs root, runs a
// command, reads a file back and shares a host directory, under the
// default accelerator policy and with it forced off. It also builds a
// consumer of the kernel package alone and one that imports
// microvm/allarch, and reports the three binaries' sizes and which
// arch's blobs each links.
func TestConsumer(t *testing.T) {
	if testing.Short() {
		t.Skip("builds consumers from a local module proxy and boots guests")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command in PATH")
	}
	for _, tool := range []string{map[string]string{"amd64": "qemu-system-x86_64", "arm64": "qemu-system-aarch64"}[runtime.GOARCH], "mksquashfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(goBin, "env", "GOMODCACHE").Output()
	if err != nil {
		t.Fatal(err)
	}
	// Third-party requirements come from the local module cache, which
	// is laid out like a proxy: no network needed.
	localProxy := "file://" + filepath.Join(strings.TrimSpace(string(out)), "cache", "download")
	proxy := t.TempDir()
	for _, arch := range []string{"amd64", "arm64"} {
		if err := modproxy.Add(proxy, rootModule+"/kernel-"+arch, "v0.1.0", filepath.Join(root, "kernel-"+arch)); err != nil {
			t.Fatal(err)
		}
	}
	if err := modproxy.Add(proxy, rootModule, "v0.1.0", root); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	modcache := filepath.Join(t.TempDir(), "mod")
	env := append(modproxy.CleanEnv(),
		"GOMODCACHE="+modcache, "GOPROXY=file://"+proxy+","+localProxy,
		"GOSUMDB=off", "GOFLAGS=-mod=mod", "GOWORK=off", "GOTOOLCHAIN=local", "CGO_ENABLED=0",
	)
	t.Cleanup(func() { // the module cache is read-only: remove it the go way
		cmd := exec.Command(goBin, "clean", "-modcache")
		cmd.Env = env
		cmd.Run()
	})
	write := func(name, content string) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module example.com/consumer\n\ngo 1.26\n\nrequire "+rootModule+" v0.1.0\n")
	write("vm/main.go", consumerMain)
	write("vmall/main.go", strings.Replace(consumerMain, "\"github.com/supermachine-go/supermachine-kernel/microvm\"\n",
		"\"github.com/supermachine-go/supermachine-kernel/microvm\"\n\t_ \"github.com/supermachine-go/supermachine-kernel/microvm/allarch\"\n", 1))
	write("facade/main.go", "package main\n\nimport (\n\t\"fmt\"\n\n\t\"github.com/supermachine-go/supermachine-kernel/kernel\"\n)\n\nfunc main() {\n\tfor _, a := range kernel.Assets() {\n\t\tb, err := a.Bytes()\n\t\tfmt.Println(a.Name(), len(b), err)\n\t}\n}\n")
	sizes := map[string]int64{}
	for _, name := range []string{"facade", "vm", "vmall"} {
		cmd := exec.Command(goBin, "build", "-o", name+".bin", "./"+name)
		cmd.Dir, cmd.Env = dir, env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build ./%s: %v\n%s", name, err, out)
		}
		fi, err := os.Stat(filepath.Join(dir, name+".bin"))
		if err != nil {
			t.Fatal(err)
		}
		sizes[name] = fi.Size()
	}
	other := map[string]string{"amd64": "arm64", "arm64": "amd64"}[runtime.GOARCH]
	otherBlob := blobWindow(t, filepath.Join(root, "kernel-"+other, "supermachine-agent.xz"))
	ownBlob := blobWindow(t, filepath.Join(root, "kernel-"+runtime.GOARCH, "supermachine-agent.xz"))
	for name, wantOther := range map[string]bool{"facade": false, "vm": false, "vmall": true} {
		b, _ := os.ReadFile(filepath.Join(dir, name+".bin"))
		if !bytes.Contains(b, ownBlob) {
			t.Errorf("%s: the binary lacks the %s agent blob", name, runtime.GOARCH)
		}
		if got := bytes.Contains(b, otherBlob); got != wantOther {
			t.Errorf("%s: links the %s agent blob: %v, want %v", name, other, got, wantOther)
		}
	}
	t.Logf("binary sizes (GOARCH=%s, CGO_ENABLED=0): kernel only %d bytes; microvm %d bytes (+%d); microvm with microvm/allarch %d bytes (+%d for %s)",
		runtime.GOARCH, sizes["facade"], sizes["vm"], sizes["vm"]-sizes["facade"], sizes["vmall"], sizes["vmall"]-sizes["vm"], other)

	// A squashfs root with busybox and a file to read back.
	bb, err := kernel.Busybox.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	tree := filepath.Join(t.TempDir(), "tree")
	if err := rootfs.WriteBusyboxTree(tree, bb, map[string][]byte{"etc/motd": []byte("from the squashfs root\n")}); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "root.squashfs")
	if err := rootfs.Squashfs(t.Context(), tree, img, "zstd"); err != nil {
		t.Fatal(err)
	}
	runs := []struct{ accel, sharing string }{{"auto", "9p"}, {"off", "9p"}}
	if os.Geteuid() == 0 {
		// virtio-fs, whose read-only share re-runs the consumer as its
		// helper.
		runs = append(runs, struct{ accel, sharing string }{"off", "virtiofs"})
	} else {
		t.Log("not root: the virtio-fs run is left out (virtiofsd needs root)")
	}
	for _, run := range runs {
		t.Run("accel="+run.accel+",sharing="+run.sharing, func(t *testing.T) {
			share := t.TempDir()
			if err := os.WriteFile(filepath.Join(share, "in"), []byte("from the host\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, filepath.Join(dir, "vm.bin"), img, share, run.accel, run.sharing)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("consumer: %v\n%s", err, out)
			}
			t.Logf("consumer printed:\n%s", out)
			for _, want := range []string{"command: from the host\nread-only\n", "file: from the squashfs root\n", "closed\n"} {
				if !strings.Contains(string(out), want) {
					t.Errorf("consumer output lacks %q", want)
				}
			}
			if run.accel == "off" && !strings.Contains(string(out), "accel: tcg ") {
				t.Errorf("accelerator off, yet the consumer did not run under TCG")
			}
			if b, err := os.ReadFile(filepath.Join(share, "out")); err != nil || string(b) != "from the guest\n" {
				t.Errorf("the guest's write to the share: %q, %v", b, err)
			}
			if _, err := os.Stat(filepath.Join(share, "nope")); err == nil {
				t.Errorf("the guest wrote through the read-only share")
			}
		})
	}
}

// blobWindow is a distinctive window of a blob's bytes.
func blobWindow(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b[len(b)/2 : len(b)/2+64]
}

var consumerMain = fmt.Sprintf(`package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/supermachine-go/supermachine-kernel/microvm"
)

// usage: vm ROOT.squashfs SHAREDIR auto|on|off 9p|virtiofs
func main() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	vm, err := microvm.Start(ctx, microvm.Config{
		Root: os.Args[1],
		Shares: []microvm.Share{
			{HostDir: os.Args[2], GuestPath: "/mnt/host", Writable: true},
			{HostDir: os.Args[2], GuestPath: "/mnt/ro"},
		},
		Accel:   microvm.Accel(os.Args[3]),
		Sharing: microvm.Sharing(os.Args[4]),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("accel: %%s fellback=%%q ready=%%s\n", vm.Accel(), vm.FellBack(), vm.ReadyAfter())
	out, err := vm.Command(ctx, "sh", "-c", "cat /mnt/host/in; echo from the guest > /mnt/host/out; echo x > /mnt/ro/nope 2>/dev/null || echo read-only").Output()
	if err != nil {
		fmt.Fprintln(os.Stderr, "command:", err)
		os.Exit(1)
	}
	fmt.Printf("command: %%s", out)
	b, err := vm.ReadFile(ctx, "/etc/motd")
	if err != nil {
		fmt.Fprintln(os.Stderr, "read file:", err)
		os.Exit(1)
	}
	fmt.Printf("file: %%s", b)
	if err := vm.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "close:", err)
		os.Exit(1)
	}
	fmt.Println("closed")
}
`)
