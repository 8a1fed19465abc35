package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The committed blobs, checked without building anything: each decodes,
// matches its manifest, and is the right kind of file for its arch.
func TestCommittedBlobs(t *testing.T) {
	var p pins
	b, err := os.ReadFile("../pins.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	for _, arch := range allArches {
		dir := filepath.Join("..", "..", "kernel-"+arch)
		m, err := readManifest(dir)
		if err != nil {
			t.Fatal(err)
		}
		if m.Arch != arch {
			t.Errorf("%s/manifest.json: arch %q", dir, m.Arch)
		}
		for _, name := range allAssets {
			t.Run(arch+"/"+name, func(t *testing.T) {
				a := m.asset(name)
				if a == nil {
					t.Fatalf("%s/manifest.json has no %s", dir, name)
				}
				data, err := decodeBlob(filepath.Join(dir, a.File), a)
				if err != nil {
					t.Fatal(err)
				}
				if err := checkAsset(arch, name, data, p.Busybox.RequiredApplets); err != nil {
					t.Fatal(err)
				}
				if name == "kernel" {
					rel, _ := kernelRelease(arch, data)
					if rel != a.Version || !strings.HasPrefix(rel, "6.12.") {
						t.Errorf("kernel release %q, manifest says %q", rel, a.Version)
					}
					cfg, err := os.ReadFile(filepath.Join(dir, a.ConfigFile))
					if err != nil {
						t.Fatal(err)
					}
					if sha256Hex(cfg) != a.ConfigSHA256 {
						t.Errorf("%s does not match config_sha256", a.ConfigFile)
					}
					if !bytes.Contains(cfg, []byte("\n# CONFIG_MODULES is not set\n")) {
						t.Errorf("%s: CONFIG_MODULES is set", a.ConfigFile)
					}
					testVmlinuxEntry(t, arch, a, data)
				}
				if !strings.Contains(a.XZ.Settings, "--format=xz") || strings.Contains(a.XZ.Settings, "--x86") {
					t.Errorf("xz settings %q: want plain LZMA2 in the xz format", a.XZ.Settings)
				}
			})
		}
	}
}

// The checks themselves must reject what they are there to reject.
func TestChecksReject(t *testing.T) {
	bz := make([]byte, 0x400)
	copy(bz[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(bz[0x20e:], 0x100)
	copy(bz[0x300:], "6.1.0 (x@y) #1\x00")
	if _, err := kernelRelease("amd64", bz); err == nil || !strings.Contains(err.Error(), "want 6.12") {
		t.Errorf("6.1 bzImage accepted: %v", err)
	}
	copy(bz[0x300:], "6.12.117 (x@y) #1\x00")
	if rel, err := kernelRelease("amd64", bz); err != nil || rel != "6.12.117" {
		t.Errorf("6.12 bzImage: %q, %v", rel, err)
	}
	if _, err := kernelRelease("arm64", bz); err == nil {
		t.Error("bzImage accepted as arm64 Image")
	}
	if err := checkStaticELF("amd64", []byte("#!/bin/sh\n")); err == nil {
		t.Error("shell script accepted as ELF")
	}
	self, err := os.ReadFile("/bin/true")
	if err == nil {
		if err := checkStaticELF("amd64", self); err == nil {
			t.Error("dynamically linked /bin/true accepted as static")
		}
	}
	if m := missingApplets([]byte("\x00sh\x00mount\x00"), []string{"sh", "switch_root"}); len(m) != 1 || m[0] != "switch_root" {
		t.Errorf("missingApplets = %q", m)
	}
}

func TestMissingOptions(t *testing.T) {
	frag := "# comment\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=\"x\"\n# CONFIG_D is not set\n"
	cfg := "\nCONFIG_A=y\nCONFIG_B=y\n# CONFIG_C is not set\n"
	got := missingOptions(frag, cfg)
	want := []string{"# CONFIG_B is not set", `CONFIG_C="x"`}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("missingOptions = %q, want %q", got, want)
	}
}

func TestPick(t *testing.T) {
	got, err := pick("asset", " agent,kernel ", allAssets)
	if err != nil || strings.Join(got, ",") != "kernel,agent" {
		t.Errorf("pick = %q, %v", got, err)
	}
	if _, err := pick("arch", "amd64,riscv64", allArches); err == nil || !strings.Contains(err.Error(), "riscv64") {
		t.Errorf("unknown arch accepted: %v", err)
	}
}

func TestXZSettingsCoverFile(t *testing.T) {
	for size, want := range map[int64]string{1000: "dict=1MiB", 5 << 20: "dict=8MiB", 8 << 20: "dict=8MiB", 8<<20 + 1: "dict=16MiB"} {
		if s := xzSettings(size, false); !strings.Contains(s, want) || !strings.Contains(s, "-T1") || strings.Contains(s, "lp=") {
			t.Errorf("xzSettings(%d) = %q, want %s", size, s, want)
		}
	}
	if s := xzSettings(1000, true); !strings.HasSuffix(s, "dict=1MiB,lc=2,lp=2") {
		t.Errorf("xzSettings(1000, aligned) = %q, want literal contexts aligned to 4 bytes", s)
	}
}

// testVmlinuxEntry checks the manifest's vmlinux entry against the kernel
// blob (amd64: the derived ELF; arm64: none), and that check notices a
// wrong entry and a missing one.
func testVmlinuxEntry(t *testing.T, arch string, k *assetInfo, bz []byte) {
	t.Helper()
	if err := checkVmlinux(arch, k, bz); err != nil {
		t.Fatal(err)
	}
	if arch != "amd64" {
		if k.Vmlinux != nil {
			t.Fatalf("%s kernel has a vmlinux entry", arch)
		}
		return
	}
	// The bzImage stores the ELF uncompressed (with its relocations and
	// setup code around it), so the two are of a size.
	if k.Vmlinux == nil || k.Vmlinux.Format != vmlinuxFormat || k.Vmlinux.Size < k.Size*9/10 {
		t.Fatalf("amd64 vmlinux entry %+v: want the ELF, at least 90%% of the %d-byte bzImage", k.Vmlinux, k.Size)
	}
	bad := *k
	v := *k.Vmlinux
	v.SHA256 = strings.Repeat("0", 64)
	bad.Vmlinux = &v
	if err := checkVmlinux(arch, &bad, bz); err == nil || !strings.Contains(err.Error(), "tools/assets gen") {
		t.Errorf("wrong vmlinux SHA-256 accepted: %v", err)
	}
	bad.Vmlinux = nil
	if err := checkVmlinux(arch, &bad, bz); err == nil {
		t.Error("missing vmlinux entry accepted")
	}
}

// TestGeneratedCurrent checks that the committed generated Go files (the
// arch modules' constants and the facade's wiring) are what gen makes
// from the committed manifests: nothing in them is edited by hand.
func TestGeneratedCurrent(t *testing.T) {
	root := filepath.Join("..", "..")
	for _, arch := range allArches {
		m, err := readManifest(filepath.Join(root, "kernel-"+arch))
		if err != nil {
			t.Fatal(err)
		}
		files, err := generated(root, m)
		if err != nil {
			t.Fatal(err)
		}
		if len(files) != 3 {
			t.Errorf("%s: %d generated files, want 3", arch, len(files))
		}
		for path, want := range files {
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s is not what go run ./tools/assets gen makes from %s/manifest.json: run it", path, "kernel-"+arch)
			}
		}
	}
}

// The committed kernel configs pass Docker's check-config.sh list: no
// "Generally Necessary" flag missing, every optional one set or omitted
// with a reason.
func TestDockerCheckConfigCommitted(t *testing.T) {
	for _, arch := range allArches {
		cfg, err := os.ReadFile(filepath.Join("..", "..", "kernel-"+arch, "kernel.config"))
		if err != nil {
			t.Fatal(err)
		}
		if err := checkDockerConfig(string(cfg)); err != nil {
			t.Errorf("kernel-%s/kernel.config: %v", arch, err)
		}
		r := dockerCheckConfig(string(cfg))
		t.Logf("%s: %d/%d necessary, %d/%d optional set", arch, r.Necessary-len(r.MissingNecessary), r.Necessary,
			r.Optional-len(r.MissingOptional), r.Optional)
	}
}

func TestDockerCheckConfigRejects(t *testing.T) {
	cfg := "CONFIG_NAMESPACES=y\nCONFIG_NET_NS=m\n# CONFIG_VETH is not set\nCONFIG_BTRFS_FS=y\n"
	r := dockerCheckConfig(cfg)
	if len(r.MissingNecessary) != len(dockerNecessary)-2 || slices.Contains(r.MissingNecessary, "NET_NS") || !slices.Contains(r.MissingNecessary, "VETH") {
		t.Errorf("missing necessary = %q", r.MissingNecessary)
	}
	err := checkDockerConfig(cfg)
	for _, want := range []string{"Generally Necessary", "VETH", "neither set nor omitted", "VXLAN", "omitted are set: BTRFS_FS"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("checkDockerConfig error %v lacks %q", err, want)
		}
	}
}

// DockerCheckConfigEnv names Docker's check-config.sh (from Debian's
// docker.io package: apt-get download docker.io; dpkg-deb -x docker.io_*.deb
// d; d/usr/share/docker.io/contrib/check-config.sh). With it set, the real
// script runs on the committed configs and must agree with the Go list.
const dockerCheckConfigEnv = "SUPERMACHINE_DOCKER_CHECK_CONFIG"

func TestDockerCheckConfigScript(t *testing.T) {
	script := os.Getenv(dockerCheckConfigEnv)
	if script == "" {
		t.Skipf("set %s to Docker's check-config.sh to run it", dockerCheckConfigEnv)
	}
	flag := regexp.MustCompile(`(?m)^\s*- CONFIG_([A-Z0-9_]+): (enabled|missing)`)
	for _, arch := range allArches {
		cfgPath := filepath.Join("..", "..", "kernel-"+arch, "kernel.config")
		out, _ := exec.Command("bash", script, cfgPath).CombinedOutput()
		text := regexp.MustCompile("\x1b\\[[0-9;]*m").ReplaceAllString(string(out), "")
		nec, opt, ok := strings.Cut(text, "\nOptional Features:")
		if !ok || !strings.Contains(nec, "Generally Necessary:") {
			t.Fatalf("%s: unexpected check-config.sh output:\n%s", arch, text)
		}
		var scriptNec []string
		for _, m := range flag.FindAllStringSubmatch(nec, -1) {
			scriptNec = append(scriptNec, m[1])
			if m[2] == "missing" {
				t.Errorf("%s: check-config.sh: Generally Necessary CONFIG_%s missing", arch, m[1])
			}
		}
		if strings.Join(scriptNec, " ") != strings.Join(dockerNecessary, " ") {
			t.Errorf("%s: the script checks %q as necessary, the Go list has %q", arch, scriptNec, dockerNecessary)
		}
		cfg, _ := os.ReadFile(cfgPath)
		r := dockerCheckConfig(string(cfg))
		for _, m := range flag.FindAllStringSubmatch(opt, -1) {
			if !slices.Contains(dockerOptional, m[1]) {
				t.Errorf("%s: the script checks optional CONFIG_%s, the Go list does not", arch, m[1])
			}
			if (m[2] == "missing") != slices.Contains(r.MissingOptional, m[1]) {
				t.Errorf("%s: the script says CONFIG_%s is %s; the Go check disagrees", arch, m[1], m[2])
			}
		}
	}
}
