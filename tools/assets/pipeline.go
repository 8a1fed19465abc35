package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// pins mirrors tools/pins.json: every input the assets are built from.
type pins struct {
	SourceDateEpoch int64 `json:"source_date_epoch"`
	Kernel          struct {
		DebianPackage    string `json:"debian_package"`
		Version          string `json:"version"`
		TarballInPackage string `json:"tarball_in_package"`
		TarballSHA256    string `json:"tarball_sha256"`
		SourceURL        string `json:"source_url"`
	} `json:"kernel"`
	Busybox struct {
		DebianPackage   string            `json:"debian_package"`
		Version         string            `json:"version"`
		DebSHA256       map[string]string `json:"deb_sha256"`
		SourceURL       string            `json:"source_url"`
		RequiredApplets []string          `json:"required_applets"`
	} `json:"busybox"`
}

type pipeline struct {
	root, work string
	opts       *options
	pins       pins

	kernelSrc string // extracted source tree, set once per run
}

// built is one asset fresh out of its build step, before packing.
type built struct {
	name    string // kernel, busybox, agent
	path    string // raw file
	version string
	source  string
	format  string
	builder string
	config  string // kernel only: path of the .config used
}

func (p *pipeline) loadPins() error {
	path := filepath.Join(p.root, "tools", "pins.json")
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, &p.pins); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func (p *pipeline) moduleDir(arch string) string { return filepath.Join(p.root, "kernel-"+arch) }
func (p *pipeline) outDir(arch string) string    { return filepath.Join(p.work, "out", arch) }

// buildRaw builds the selected assets of one arch and checks each one.
func (p *pipeline) buildRaw(ctx context.Context, arch string, assets []string) ([]*built, error) {
	if err := os.MkdirAll(p.outDir(arch), 0o755); err != nil {
		return nil, err
	}
	var out []*built
	for _, a := range assets {
		var b *built
		var err error
		switch a {
		case "kernel":
			b, err = p.buildKernel(ctx, arch)
		case "busybox":
			b, err = p.buildBusybox(ctx, arch)
		case "agent":
			b, err = p.buildAgent(ctx, arch)
		}
		if err != nil {
			return nil, fmt.Errorf("%s/%s: %w", arch, a, err)
		}
		data, err := os.ReadFile(b.path)
		if err != nil {
			return nil, err
		}
		if err := checkAsset(arch, a, data, p.pins.Busybox.RequiredApplets); err != nil {
			return nil, fmt.Errorf("%s/%s: built file %s fails its check: %w", arch, a, b.path, err)
		}
		out = append(out, b)
	}
	return out, nil
}

func (p *pipeline) build(ctx context.Context, arches, assets []string) error {
	for _, arch := range arches {
		bs, err := p.buildRaw(ctx, arch, assets)
		if err != nil {
			return err
		}
		if err := p.pack(arch, bs); err != nil {
			return fmt.Errorf("%s: pack: %w", arch, err)
		}
	}
	logf("done; review with: git status kernel-amd64 kernel-arm64")
	return nil
}

// verify rebuilds and compares raw and packed hashes with the committed
// manifest, naming every blob that differs.
func (p *pipeline) verify(ctx context.Context, arches, assets []string) error {
	var diffs []string
	for _, arch := range arches {
		m, err := readManifest(p.moduleDir(arch))
		if err != nil {
			return err
		}
		bs, err := p.buildRaw(ctx, arch, assets)
		if err != nil {
			return err
		}
		for _, b := range bs {
			want := m.asset(b.name)
			if want == nil {
				diffs = append(diffs, fmt.Sprintf("%s/%s: not in the committed manifest", arch, b.name))
				continue
			}
			got, err := describe(b, want.XZ.Settings)
			if err != nil {
				return err
			}
			switch {
			case got.SHA256 != want.SHA256:
				diffs = append(diffs, fmt.Sprintf("%s/%s: rebuilt %s has SHA-256 %s (%d bytes), manifest says %s (%d bytes)",
					arch, b.name, b.path, got.SHA256, got.Size, want.SHA256, want.Size))
			case got.XZ.SHA256 != want.XZ.SHA256:
				diffs = append(diffs, fmt.Sprintf("%s/%s: raw bytes match, packed bytes differ: xz %s vs manifest %s (xz version here: %s, manifest: %s)",
					arch, b.name, got.XZ.SHA256, want.XZ.SHA256, got.XZ.Tool, want.XZ.Tool))
			default:
				logf("%s/%s: identical (%s)", arch, b.name, got.SHA256)
			}
		}
	}
	if len(diffs) > 0 {
		return fmt.Errorf("%d blob(s) differ:\n  %s", len(diffs), strings.Join(diffs, "\n  "))
	}
	logf("all rebuilt blobs match the committed manifests")
	return nil
}

// checkCommitted decodes the committed blobs and checks them against their
// manifests, without building anything.
func (p *pipeline) checkCommitted(arches []string) error {
	for _, arch := range arches {
		dir := p.moduleDir(arch)
		m, err := readManifest(dir)
		if err != nil {
			return err
		}
		for _, a := range m.assets() {
			data, err := decodeBlob(filepath.Join(dir, a.File), a)
			if err != nil {
				return err
			}
			if err := checkAsset(arch, a.Name, data, p.pins.Busybox.RequiredApplets); err != nil {
				return fmt.Errorf("%s/%s: %w", arch, a.File, err)
			}
			if a.ConfigFile != "" {
				if err := checkKernelConfig(filepath.Join(dir, a.ConfigFile), a.ConfigSHA256); err != nil {
					return fmt.Errorf("%s/%s: %w", arch, a.ConfigFile, err)
				}
				logf("%s/%s: ok (Docker's check-config.sh: 0 of %d \"Generally Necessary\" missing; optional ones set or omitted with a reason)",
					arch, a.ConfigFile, len(dockerNecessary))
			}
			logf("%s/%s: ok (%d bytes, sha256 %s)", arch, a.File, a.Size, a.SHA256)
			if a.Name == "kernel" {
				if err := checkVmlinux(arch, a, data); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// checkKernelConfig checks a committed kernel config: its SHA-256 is the
// manifest's, and it passes Docker's checklist (checkDockerConfig).
func checkKernelConfig(path, sum string) error {
	cfg, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if got := sha256Hex(cfg); got != sum {
		return fmt.Errorf("SHA-256 %s, manifest says %s", got, sum)
	}
	return checkDockerConfig(string(cfg))
}
