package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/supermachine-go/supermachine-kernel/internal/atomicfile"
)

// aptDownload fetches pkg:arch=version into build/dl and returns its path.
// A pin that the mirror no longer serves is an error that names the pin,
// what is available, and how to bump it.
func (p *pipeline) aptDownload(ctx context.Context, pkg, arch, version string) (string, error) {
	dl := filepath.Join(p.work, "dl")
	if err := os.MkdirAll(dl, 0o755); err != nil {
		return "", err
	}
	// apt names files with the epoch's colon escaped as %3a.
	file := fmt.Sprintf("%s_%s_%s.deb", pkg, strings.ReplaceAll(version, ":", "%3a"), arch)
	path := filepath.Join(dl, file)
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	spec := pkg + "=" + version
	if arch != "all" {
		spec = pkg + ":" + arch + "=" + version
	}
	logf("downloading %s", spec)
	cmd := exec.CommandContext(ctx, "apt-get", "download", spec)
	cmd.Dir = dl
	out, err := cmd.CombinedOutput()
	if err != nil {
		avail, _ := exec.CommandContext(ctx, "apt-cache", "madison", pkg).Output()
		hint := ""
		if arch == "arm64" {
			hint = " (arm64 packages need: dpkg --add-architecture arm64 && apt-get update)"
		}
		return "", fmt.Errorf("pinned %s is not available from the configured Debian mirrors%s: %v\n%s\navailable versions:\n%s\n"+
			"to bump the pin, edit tools/pins.json (version and SHA-256; this changes the blobs) and rebuild",
			spec, hint, err, strings.TrimSpace(string(out)), strings.TrimSpace(string(avail)))
	}
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("apt-get download %s did not produce %s", spec, path)
	}
	return path, nil
}

// extractFromDeb writes one member of a .deb's data archive to dest.
func extractFromDeb(ctx context.Context, deb, member, dest string) error {
	dpkg := exec.CommandContext(ctx, "dpkg-deb", "--fsys-tarfile", deb)
	tar := exec.CommandContext(ctx, "tar", "-xO", "./"+member)
	pipe, err := dpkg.StdoutPipe()
	if err != nil {
		return err
	}
	tar.Stdin = pipe
	var out, errb bytes.Buffer
	tar.Stdout, tar.Stderr, dpkg.Stderr = &out, &errb, &errb
	if err := dpkg.Start(); err != nil {
		return err
	}
	if err := tar.Run(); err != nil {
		dpkg.Wait()
		return fmt.Errorf("extract %s from %s: %w: %s", member, deb, err, errb.String())
	}
	if err := dpkg.Wait(); err != nil {
		return fmt.Errorf("dpkg-deb --fsys-tarfile %s: %w: %s", deb, err, errb.String())
	}
	return writeFileAtomic(dest, out.Bytes(), 0o644)
}

func (p *pipeline) buildBusybox(ctx context.Context, arch string) (*built, error) {
	b := p.pins.Busybox
	want := b.DebSHA256[arch]
	if want == "" {
		return nil, fmt.Errorf("tools/pins.json has no busybox deb_sha256 for %s", arch)
	}
	deb, err := p.aptDownload(ctx, b.DebianPackage, arch, b.Version)
	if err != nil {
		return nil, err
	}
	sum, err := fileSHA256(deb)
	if err != nil {
		return nil, err
	}
	if sum != want {
		return nil, fmt.Errorf("%s has SHA-256 %s, tools/pins.json pins %s", deb, sum, want)
	}
	raw := filepath.Join(p.outDir(arch), "busybox")
	if err := extractFromDeb(ctx, deb, "bin/busybox", raw); err != nil {
		return nil, err
	}
	return &built{
		name:    "busybox",
		path:    raw,
		version: b.Version,
		source:  fmt.Sprintf("Debian %s:%s %s (deb sha256 %s)", b.DebianPackage, arch, b.Version, want),
		format:  "static ELF",
		builder: "Debian",
	}, nil
}

// buildAgent cross-compiles agent/cmd/supermachine-agent: static, no build
// ID, no VCS stamp, trimmed paths, so the bytes depend only on the source
// and the Go version.
func (p *pipeline) buildAgent(ctx context.Context, arch string) (*built, error) {
	raw := filepath.Join(p.outDir(arch), "supermachine-agent")
	env := []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=" + arch, "GOFLAGS=", "GOAMD64=v1", "GOARM64=v8.0"}
	logf("%s agent: go build", arch)
	if err := runCmd(ctx, p.root, env, "go", "build", "-trimpath", "-buildvcs=false",
		"-ldflags=-s -w -buildid=", "-o", raw, "./agent/cmd/supermachine-agent"); err != nil {
		return nil, err
	}
	version, err := agentVersion(p.root)
	if err != nil {
		return nil, err
	}
	gov, err := exec.CommandContext(ctx, "go", "env", "GOVERSION").Output()
	if err != nil {
		return nil, err
	}
	return &built{
		name:    "agent",
		path:    raw,
		version: version,
		source:  "agent/ of this repository",
		format:  "static ELF",
		builder: strings.TrimSpace(string(gov)),
	}, nil
}

// agentVersion reads `const AgentVersion = "x.y.z"` from
// agent/protocol/version.go.
func agentVersion(root string) (string, error) {
	path := filepath.Join(root, "agent", "protocol", "version.go")
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if rest, ok := strings.CutPrefix(l, "const AgentVersion = "); ok {
			return strings.Trim(rest, `"`), nil
		}
	}
	return "", fmt.Errorf("%s: no `const AgentVersion = \"...\"` line", path)
}

// runCmd runs a command in dir with env added to the host's environment.
func runCmd(ctx context.Context, dir string, env []string, name string, args ...string) error {
	return runCmdEnv(ctx, dir, append(os.Environ(), env...), name, args...)
}

// runCmdEnv runs a command in dir in the environment env, the whole of
// it. When ctx ends, the command and every process it started are
// killed.
func runCmdEnv(ctx context.Context, dir string, env []string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = env
	inProcessGroup(cmd)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return writeFileAtomic(dst, b, 0o644)
}

// writeFileAtomic writes with internal/atomicfile, so an interrupted run
// never leaves a half-written file.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	return atomicfile.WriteFile(context.Background(), path, data, mode)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}
