package boottest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// testGuestClock shows that the guest keeps a high-resolution
// clocksource after 3 s of uptime (under TCG the clocksource watchdog
// used to mark the TSC unstable at about 1.5 s and fall back to
// refined-jiffies) and that a 1 ms sleep takes 1–3 ms by the guest's
// clock.
func testGuestClock(ctx context.Context, t *testing.T, g *Guest, arch, dir string) {
	bin := filepath.Join(dir, "clockcheck-"+arch)
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./clockcheck")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build clockcheck: %v\n%s", err, out)
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Client.WriteFile(ctx, "/tmp/clockcheck", bytes.NewReader(b), 0o755, nil); err != nil {
		t.Fatal(err)
	}
	for {
		up, err := g.Shell(ctx, "cut -d' ' -f1 /proc/uptime")
		if err != nil {
			t.Fatal(err)
		}
		if s, _ := strconv.ParseFloat(strings.TrimSpace(up), 64); s >= 3 {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	out, err := g.Client.Command(ctx, "/tmp/clockcheck").Output()
	if err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSpace(string(out))
	t.Logf("%s (accelerator %s)", line, g.VM.Accel())
	var cs string
	var n int
	var min, med, max time.Duration
	var smin, smed, smax string
	if _, err := fmt.Sscanf(line, "clocksource=%s n=%d min=%s median=%s max=%s", &cs, &n, &smin, &smed, &smax); err != nil {
		t.Fatalf("clockcheck printed %q: %v", line, err)
	}
	for _, p := range []struct {
		s string
		d *time.Duration
	}{{smin, &min}, {smed, &med}, {smax, &max}} {
		if *p.d, err = time.ParseDuration(p.s); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]string{"amd64": "tsc kvm-clock", "arm64": "arch_sys_counter"}[arch]
	if !strings.Contains(" "+want+" ", " "+cs+" ") {
		t.Errorf("clocksource after 3s of uptime is %s, want one of %s", cs, want)
	}
	if med < time.Millisecond || med > 3*time.Millisecond {
		t.Errorf("a 1 ms sleep takes %s (median of %d), want 1–3 ms", med, n)
	}
}
