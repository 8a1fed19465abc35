// Package modproxy writes modules of this repository to a file-based Go
// module proxy, as a release would publish them, so that tests can build
// a consumer module against them with an empty module cache.
package modproxy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/mod/module"
	"golang.org/x/mod/zip"
)

// Add writes version of module modPath, made of the files of the module
// rooted at dir (see Files), to the file proxy at proxy.
func Add(proxy, modPath, version, dir string) error {
	files, err := Files(dir)
	if err != nil {
		return err
	}
	esc, err := module.EscapePath(modPath)
	if err != nil {
		return err
	}
	vdir := filepath.Join(proxy, filepath.FromSlash(esc), "@v")
	if err := os.MkdirAll(vdir, 0o755); err != nil {
		return err
	}
	gomod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return err
	}
	info, _ := json.Marshal(map[string]string{"Version": version, "Time": "2025-01-01T00:00:00Z"})
	var z bytes.Buffer
	if err := zip.Create(&z, module.Version{Path: modPath, Version: version}, files); err != nil {
		return fmt.Errorf("modproxy: %s: %w", modPath, err)
	}
	for name, data := range map[string][]byte{
		"list":            []byte(version + "\n"),
		version + ".info": info,
		version + ".mod":  gomod,
		version + ".zip":  z.Bytes(),
	} {
		if err := os.WriteFile(filepath.Join(vdir, name), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// Files lists the files of the module rooted at dir as a release would
// hold them: without nested modules, VCS directories, the build tree, and
// files a module zip cannot hold.
func Files(dir string) ([]zip.File, error) {
	var files []zip.File
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		slash := filepath.ToSlash(rel)
		if d.IsDir() {
			if rel == "." {
				return nil
			}
			if slash == "build" || strings.HasPrefix(d.Name(), ".") && d.Name() != ".github" && d.Name() != ".ci" {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(p, "go.mod")); err == nil {
				return filepath.SkipDir // a nested module
			}
			return nil
		}
		if !d.Type().IsRegular() || module.CheckFilePath(slash) != nil {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil // vanished: someone else's temporary file
		}
		files = append(files, file{path: slash, osPath: p, info: info})
		return nil
	})
	return files, err
}

// file is a zip.File read from disk.
type file struct {
	path, osPath string
	info         fs.FileInfo
}

func (f file) Path() string                 { return path.Clean(f.path) }
func (f file) Lstat() (fs.FileInfo, error)  { return f.info, nil }
func (f file) Open() (io.ReadCloser, error) { return os.Open(f.osPath) }

// CleanEnv is the environment without the variables a consumer build
// sets itself.
func CleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "GOMODCACHE", "GOPROXY", "GOSUMDB", "GONOSUMDB", "GOPRIVATE", "GONOPROXY", "GOFLAGS",
			"GOWORK", "GOTOOLCHAIN", "GOOS", "GOARCH", "CGO_ENABLED", "GOINSECURE":
			continue
		}
		env = append(env, kv)
	}
	return env
}
