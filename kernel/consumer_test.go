package kernel_test

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/mod/module"

	"github.com/supermachine-go/supermachine-kernel/internal/modproxy"
)

const (
	rootModule     = "github.com/supermachine-go/supermachine-kernel"
	consumeVersion = "v0.1.0"
)

// TestConsumer is what a user of the module sees: a throwaway module that
// imports the facade is built, with an empty module cache, against a local
// file GOPROXY holding this repository's three modules as they would be
// released. An amd64 build must download and link only the amd64 assets,
// and an arm64 build only the arm64 ones. It also checks what go mod tidy
// and go mod vendor do (they fetch both arches; the README says so).
func TestConsumer(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping the consumer test (two builds from a local module proxy) in short mode")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("skipping: no go command in PATH")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "go.mod")); err != nil || !bytes.HasPrefix(b, []byte("module "+rootModule+"\n")) {
		t.Skipf("skipping: not run from the repository (%v)", err)
	}
	out, err := exec.Command(goBin, "env", "GOMODCACHE").Output()
	if err != nil {
		t.Fatal(err)
	}
	// Third-party requirements of the root module come from the local
	// module cache, which is laid out like a proxy: no network needed.
	localProxy := "file://" + filepath.Join(strings.TrimSpace(string(out)), "cache", "download")

	proxy := t.TempDir()
	for _, arch := range []string{"amd64", "arm64"} {
		if err := modproxy.Add(proxy, rootModule+"/kernel-"+arch, consumeVersion, filepath.Join(root, "kernel-"+arch)); err != nil {
			t.Fatal(err)
		}
	}
	if err := modproxy.Add(proxy, rootModule, consumeVersion, root); err != nil {
		t.Fatal(err)
	}

	blobs := map[string][][]byte{} // arch -> a distinctive window of each xz blob
	for _, arch := range []string{"amd64", "arm64"} {
		names, _ := filepath.Glob(filepath.Join(root, "kernel-"+arch, "*.xz"))
		for _, name := range names {
			b, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			blobs[arch] = append(blobs[arch], b[len(b)/2:len(b)/2+64])
		}
		if len(blobs[arch]) != 3 {
			t.Fatalf("kernel-%s holds %d blobs, want 3", arch, len(blobs[arch]))
		}
	}

	for _, arch := range []string{"amd64", "arm64"} {
		t.Run(arch, func(t *testing.T) {
			other := map[string]string{"amd64": "arm64", "arm64": "amd64"}[arch]
			dir := t.TempDir()
			modcache := filepath.Join(t.TempDir(), "mod")
			env := append(modproxy.CleanEnv(),
				"GOMODCACHE="+modcache,
				"GOPROXY=file://"+proxy+","+localProxy,
				"GOSUMDB=off", "GOFLAGS=-mod=mod", "GOWORK=off", "GOTOOLCHAIN=local",
				"GOOS=linux", "GOARCH="+arch, "CGO_ENABLED=0",
			)
			run := func(args ...string) string {
				t.Helper()
				cmd := exec.Command(goBin, args...)
				cmd.Dir, cmd.Env = dir, env
				out, err := cmd.CombinedOutput()
				if err != nil {
					t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
				}
				return string(out)
			}
			// The module cache is read-only: remove it the go way.
			t.Cleanup(func() {
				cmd := exec.Command(goBin, "clean", "-modcache")
				cmd.Env = env
				cmd.Run()
			})
			os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module example.com/consumer\n\ngo 1.26\n\nrequire "+rootModule+" "+consumeVersion+"\n"), 0o644)
			os.WriteFile(filepath.Join(dir, "main.go"), []byte(consumerMain), 0o644)

			run("build", "-o", "consumer", ".")
			checkDownloads(t, filepath.Join(modcache, "cache", "download"), "go build", true)

			dl := func(a string) string {
				return filepath.Join(modcache, "cache", "download", rootModule, "kernel-"+a, "@v", consumeVersion+".zip")
			}
			if _, err := os.Stat(dl(arch)); err != nil {
				t.Errorf("the %s module zip was not downloaded: %v", arch, err)
			}
			if _, err := os.Stat(dl(other)); err == nil {
				t.Errorf("the %s build downloaded the %s module zip", arch, other)
			}
			if _, err := os.Stat(filepath.Join(modcache, rootModule, "kernel-"+other+"@"+consumeVersion)); err == nil {
				t.Errorf("the %s build extracted the %s module", arch, other)
			}
			// The root's replace directives are for its own
			// development only: a consumer gets the released modules.
			list := run("list", "-m", "all")
			if !strings.Contains(list, rootModule+"/kernel-"+arch+" "+consumeVersion+"\n") || strings.Contains(list, "=>") {
				t.Errorf("go list -m all:\n%s", list)
			}

			bin, err := os.ReadFile(filepath.Join(dir, "consumer"))
			if err != nil {
				t.Fatal(err)
			}
			for i, w := range blobs[arch] {
				if !bytes.Contains(bin, w) {
					t.Errorf("the %s binary lacks %s blob %d", arch, arch, i)
				}
			}
			for i, w := range blobs[other] {
				if bytes.Contains(bin, w) {
					t.Errorf("the %s binary contains %s blob %d", arch, other, i)
				}
			}
			fi, _ := os.Stat(filepath.Join(dir, "consumer"))
			t.Logf("GOARCH=%s: consumer binary %d bytes; %s zip not downloaded, no %s blob bytes linked", arch, fi.Size(), other, other)

			if out, ok := runBinary(t, arch, filepath.Join(dir, "consumer")); ok {
				want := arch + " " + map[string]string{"amd64": "bzImage", "arm64": "Image"}[arch]
				if !strings.HasPrefix(out, want+" ") || !strings.HasSuffix(strings.TrimSpace(out), " true") {
					t.Errorf("consumer printed %q, want %q... true", out, want)
				}
			}

			// What the README documents. go build records only the
			// arch module it needed (as // indirect), so a plain go mod
			// download fetches that one only; go mod tidy considers all
			// platforms, so it adds and fetches the other arch's module
			// too, and go mod vendor copies both. Builds still link one.
			gomod, _ := os.ReadFile(filepath.Join(dir, "go.mod"))
			if bytes.Contains(gomod, []byte("kernel-"+other)) {
				t.Errorf("go build recorded the %s module:\n%s", other, gomod)
			}
			run("mod", "download")
			if _, err := os.Stat(dl(other)); err == nil {
				t.Errorf("go mod download after go build fetched the %s module zip; update the README", other)
			}
			run("mod", "tidy")
			checkDownloads(t, filepath.Join(modcache, "cache", "download"), "go mod tidy", false)
			if _, err := os.Stat(dl(other)); err != nil {
				t.Errorf("go mod tidy did not download the %s module zip; update the README", other)
			} else {
				t.Logf("go mod tidy downloads the %s module zip too (as the README says)", other)
			}
			run("mod", "vendor")
			for _, a := range []string{arch, other} {
				if _, err := os.Stat(filepath.Join(dir, "vendor", rootModule, "kernel-"+a, "supermachine-agent.xz")); err != nil {
					t.Errorf("go mod vendor did not vendor the %s blobs: %v", a, err)
				}
			}
			cmd := exec.Command(goBin, "build", "-mod=vendor", "-o", "consumer-vendored", ".")
			cmd.Dir, cmd.Env = dir, append(env, "GOFLAGS=")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("vendored build: %v\n%s", err, out)
			}
			bin, _ = os.ReadFile(filepath.Join(dir, "consumer-vendored"))
			for i, w := range blobs[other] {
				if bytes.Contains(bin, w) {
					t.Errorf("the vendored %s binary contains %s blob %d", arch, other, i)
				}
			}
		})
	}
}

const consumerMain = `package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/supermachine-go/supermachine-kernel/kernel"
)

func main() {
	m := kernel.Manifest()
	b, err := kernel.Kernel.Bytes()
	if err != nil {
		panic(err)
	}
	sum := sha256.Sum256(b)
	fmt.Println(m.Arch, m.Kernel.File, len(b), hex.EncodeToString(sum[:]) == m.Kernel.SHA256)
}
`

// runBinary runs a linux binary of arch natively, or under qemu-user where
// the kernel cannot run it (another arch, no binfmt_misc), if it can.
func runBinary(t *testing.T, arch, bin string) (string, bool) {
	t.Helper()
	out, err := exec.Command(bin).CombinedOutput()
	if errors.Is(err, syscall.ENOEXEC) || (err != nil && runtime.GOOS != "linux") {
		q, lerr := exec.LookPath("qemu-" + map[string]string{"amd64": "x86_64", "arm64": "aarch64"}[arch] + "-static")
		if lerr != nil {
			t.Logf("not running the %s binary: %v, and no emulator", arch, err)
			return "", false
		}
		out, err = exec.Command(q, bin).CombinedOutput()
	}
	if err != nil {
		t.Errorf("%s: %v\n%s", bin, err, out)
		return "", false
	}
	return string(out), true
}

// facadeModules are the only modules a build of the facade may fetch
// anything of (a go.mod or a zip): this module, its arch modules, the xz
// decoder and the LZ4 decoder (for kernel.Vmlinux). The root module's
// other requirements (go-containerregistry and its graph for the image
// code, the CLI's) stay out of a facade consumer's downloads: module
// graph pruning never loads the go.mod of a module no imported package
// needs.
var facadeModules = []string{rootModule, rootModule + "/kernel-amd64", rootModule + "/kernel-arm64", "github.com/ulikunitz/xz", "github.com/pierrec/lz4/v4"}

// imageModules are the image code's dependencies: after go mod tidy (which
// reads the go.mod of every module the root module requires) a facade
// consumer holds their go.mod files, never their code.
var imageModules = []string{"github.com/google/go-containerregistry", "github.com/docker/", "github.com/klauspost/compress", "github.com/opencontainers/", "github.com/sirupsen/logrus"}

// checkDownloads lists what the module download cache holds after step.
// With strict, it fails on any file of a module but facadeModules;
// otherwise on the code (zip) of any of imageModules.
func checkDownloads(t *testing.T, dl, step string, strict bool) {
	t.Helper()
	var fetched []string
	filepath.WalkDir(dl, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Base(filepath.Dir(p)) != "@v" || !(strings.HasSuffix(p, ".mod") || strings.HasSuffix(p, ".zip")) {
			return nil
		}
		rel, _ := filepath.Rel(dl, filepath.Dir(filepath.Dir(p)))
		mod, err := module.UnescapePath(filepath.ToSlash(rel))
		if err != nil {
			mod = rel
		}
		fetched = append(fetched, mod+"@"+filepath.Base(p))
		if !strict {
			for _, m := range imageModules {
				if strings.HasPrefix(mod, m) && strings.HasSuffix(p, ".zip") {
					t.Errorf("%s of the facade fetched the code of %s", step, mod)
				}
			}
			return nil
		}
		for _, m := range facadeModules {
			if mod == m {
				return nil
			}
		}
		t.Errorf("%s of the facade fetched %s of %s", step, filepath.Base(p), mod)
		return nil
	})
	t.Logf("%s of the facade fetched: %s", step, strings.Join(fetched, " "))
}
