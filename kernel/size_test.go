package kernel_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/supermachine-go/supermachine-kernel/kernel"
)

// TestBinarySizeOverhead builds a tiny program with and without the
// facade and logs what importing it costs, next to the packed blob sizes
// (which are most of it). Rerun with
//
//	go test -run BinarySize -v ./kernel/
func TestBinarySizeOverhead(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping two builds in short mode")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("skipping: no go command in PATH")
	}
	dir := t.TempDir()
	progs := map[string]string{
		"without": "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"x\") }\n",
		"with":    "package main\n\nimport (\n\t\"fmt\"\n\n\t\"github.com/supermachine-go/supermachine-kernel/kernel\"\n)\n\nfunc main() { fmt.Println(kernel.Manifest().Arch) }\n",
	}
	size := map[string]int64{}
	for name, src := range progs {
		file := filepath.Join(dir, name+".go")
		os.WriteFile(file, []byte(src), 0o644)
		bin := filepath.Join(dir, name)
		// Run in this module, so that the import resolves to it.
		cmd := exec.Command(goBin, "build", "-trimpath", "-ldflags=-s -w", "-o", bin, file)
		cmd.Env = append(os.Environ(), "GOOS=linux", "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", name, err, out)
		}
		fi, err := os.Stat(bin)
		if err != nil {
			t.Fatal(err)
		}
		size[name] = fi.Size()
	}
	m := kernel.Manifest()
	blobs := m.Kernel.XZSize + m.Busybox.XZSize + m.Agent.XZSize
	over := size["with"] - size["without"]
	t.Logf("GOARCH=%s, -ldflags=-s -w: without the facade %d bytes, with it %d bytes: +%d bytes", kernel.Arch, size["without"], size["with"], over)
	t.Logf("packed blobs %d bytes (kernel %d, busybox %d, agent %d); code and tables of the facade, extractor and xz decoder: %d bytes",
		blobs, m.Kernel.XZSize, m.Busybox.XZSize, m.Agent.XZSize, over-blobs)
	if over < blobs {
		t.Errorf("the overhead %d is less than the blobs %d: are the blobs linked?", over, blobs)
	}
}
