package microvm

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/cavaliergopher/cpio"

	"github.com/supermachine-go/supermachine-kernel/agent"
)

// recordingEngine keeps the machine it is asked to boot, and its
// initramfs (gone with the VM's directory when the boot fails), and boots
// none.
type recordingEngine struct {
	m      machine
	initrd []byte
}

var errNotBooted = errors.New("not booted")

func (e *recordingEngine) boot(_ context.Context, m machine) (instance, *agent.Client, error) {
	e.m = m
	e.initrd, _ = os.ReadFile(m.initrd)
	return nil, nil, errNotBooted
}

// initSettings returns the settings files in an initramfs, in the order
// the init reads them: the archive's, then the segments'. The archives
// are concatenated, each ending with its trailer.
func initSettings(t *testing.T, initrd []byte) string {
	t.Helper()
	var all strings.Builder
	for rest := initrd; len(bytes.Trim(rest, "\x00")) > 0; {
		br := bytes.NewReader(rest)
		r := cpio.NewReader(br)
		for {
			h, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.HasSuffix(h.Name, ".conf") {
				b, _ := io.ReadAll(r)
				all.WriteString(h.Name + ":\n" + string(b))
			}
		}
		// The next archive starts after the trailer and its padding.
		rest = bytes.TrimLeft(rest[len(rest)-br.Len():], "\x00")
	}
	return all.String()
}

// What reaches the engine for a shared root and shares: the root's tag,
// type and (over 9p) mount options in the cached archive, the shares'
// mounts in the per-boot segment, and the shares by tag.
func TestMachineOfSharedRoot(t *testing.T) {
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh to share as a root")
	}
	work := t.TempDir()
	c, err := Config{Root: "/", ShareRoot: true, Sharing: Sharing9P,
		Shares: []Share{{HostDir: work, GuestPath: "/work", Writable: true}}}.normalize()
	if err != nil {
		t.Fatal(err)
	}
	var e recordingEngine
	if _, err := start(context.Background(), c, &e); !errors.Is(err, errNotBooted) {
		t.Fatalf("start: %v", err)
	}
	if len(e.m.disks) != 0 {
		t.Errorf("a shared root got disks: %+v", e.m.disks)
	}
	want := []hostShare{{tag: rootShareTag, hostDir: "/"}, {tag: shareTag(0), hostDir: work, writable: true}}
	if len(e.m.shares) != 2 || e.m.shares[0] != want[0] || e.m.shares[1] != want[1] {
		t.Errorf("shares %+v, want %+v", e.m.shares, want)
	}
	settings := initSettings(t, e.initrd)
	for _, line := range []string{
		`root "` + rootShareTag + `"`,
		`rootfstype "9p"`,
		`rootoptions "` + share9POptions + `"`,
		`mount "` + shareTag(0) + `" "/work" "9p" "` + share9POptions + `"`,
	} {
		if !strings.Contains(settings, line+"\n") {
			t.Errorf("the init's settings lack %s:\n%s", line, settings)
		}
	}
	if i, j := strings.Index(settings, "boot.conf"), strings.Index(settings, `mount "`); i < 0 || j < i {
		t.Errorf("the share's mount is not in the per-boot segment:\n%s", settings)
	}
}
