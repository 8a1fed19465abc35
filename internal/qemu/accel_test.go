package qemu

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeHost makes the test process look like a host whose hardware
// accelerator opens, counting the probes.
func fakeHost(t *testing.T) *int {
	t.Helper()
	var opens int
	old := accelOpens
	accelOpens = func(string) error { opens++; return nil }
	t.Cleanup(func() { accelOpens = old })
	t.Setenv(AccelEnv, "")
	t.Setenv(ForgetEnv, "")
	return &opens
}

type notes struct {
	mu sync.Mutex
	l  []string
}

func (n *notes) add(s string) { n.mu.Lock(); n.l = append(n.l, s); n.mu.Unlock() }
func (n *notes) has(sub string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.ContainsFunc(n.l, func(s string) bool { return strings.Contains(s, sub) })
}
func (n *notes) String() string { n.mu.Lock(); defer n.mu.Unlock(); return strings.Join(n.l, "\n") }

// fakeConfig is a guest of the host arch run by the fake QEMU mode.
func fakeConfig(t *testing.T, mode, kvm string, n *notes) Config {
	t.Helper()
	if !fakeAgentWorks {
		t.Skip("the fake QEMU serves the agent with the agent's server, which runs on Linux only")
	}
	dir := t.TempDir()
	kernel := filepath.Join(dir, "kernel")
	os.WriteFile(kernel, []byte("not a kernel: "+t.Name()), 0o644)
	return Config{
		Arch: runtime.GOARCH, Kernel: kernel, KVM: kvm, Binary: fakeBinary(t, mode),
		AgentSocket: filepath.Join(dir, "agent.sock"), StateDir: filepath.Join(dir, "state"),
		Progress: n.add,
	}
}

func bootFake(t *testing.T, c Config) (*VM, time.Duration, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	vm, cl, err := Boot(ctx, c)
	took := time.Since(start)
	if err == nil {
		if perr := cl.Ping(ctx); perr != nil {
			t.Errorf("ping after boot: %v", perr)
		}
		cl.Close()
		t.Cleanup(vm.Kill)
	}
	return vm, took, err
}

// An accelerator that stops the VM with an internal error (on stderr and
// in the QMP run state, or in the run state alone) or makes QEMU exit
// leads to a boot under TCG in the same call, with one line naming the
// reason, well within the 5 s a hardware-accelerated phase may take.
func TestAutoFallsBackToTCG(t *testing.T) {
	for _, tc := range []struct{ mode, reason string }{
		{"internal-error", "KVM internal error. Suberror: 1, emulation failure"},
		{"internal-error-qmp", "run state internal-error"},
		{"msr-exit", "failed to set MSR 0x10a"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			opens := fakeHost(t)
			var n notes
			c := fakeConfig(t, tc.mode, "auto", &n)
			vm, took, err := bootFake(t, c)
			if err != nil {
				t.Fatalf("boot: %v\nprogress:\n%s", err, &n)
			}
			if vm.Accel() != TCG {
				t.Errorf("accelerator %s, want tcg", vm.Accel())
			}
			if !strings.Contains(vm.FellBack(), tc.reason) {
				t.Errorf("FellBack() = %q, want it to name %q", vm.FellBack(), tc.reason)
			}
			if want := "KVM cannot run this guest here"; runtime.GOOS == "linux" && !n.has(want) || !n.has("using software emulation") {
				t.Errorf("no fallback line in progress:\n%s", &n)
			}
			if took > 5*time.Second {
				t.Errorf("fallback took %s, want under 5s", took)
			}
			if *opens != 1 {
				t.Errorf("/dev/kvm probed %d times, want 1", *opens)
			}

			// The verdict is on disk: the next boot, even from a new
			// process (simulated by clearing the process memory), goes
			// straight to TCG.
			files, _ := filepath.Glob(filepath.Join(c.StateDir, "accel", "*.json"))
			if len(files) != 1 {
				t.Fatalf("remembered verdicts: %v, want one file", files)
			}
			memoMu.Lock()
			clear(memoSeen)
			memoMu.Unlock()
			var n2 notes
			c.Progress = n2.add
			vm2, took2, err := bootFake(t, c)
			if err != nil {
				t.Fatal(err)
			}
			if vm2.Accel() != TCG || vm2.FellBack() != "" || !n2.has("could not run this guest here before") || n2.has("booting "+runtime.GOARCH+" under QEMU with KVM") {
				t.Errorf("second boot: accel %s, fell back %q, progress:\n%s", vm2.Accel(), vm2.FellBack(), &n2)
			}
			t.Logf("first boot %s, second %s", took, took2)

			// Forgetting makes the next boot try the accelerator again.
			t.Setenv(ForgetEnv, "1")
			var n3 notes
			c.Progress = n3.add
			if _, _, err := bootFake(t, c); err != nil {
				t.Fatal(err)
			}
			if !n3.has("cannot run this guest here") {
				t.Errorf("after %s=1 the accelerator was not tried again:\n%s", ForgetEnv, &n3)
			}
		})
	}
}

// -kvm on never falls back: it fails fast with the reason and without
// QEMU's register dump.
func TestKVMOnFailsFast(t *testing.T) {
	fakeHost(t)
	var n notes
	c := fakeConfig(t, "internal-error", "on", &n)
	_, took, err := bootFake(t, c)
	if err == nil {
		t.Fatal("boot succeeded")
	}
	if !errors.Is(err, ErrAccel) || !errors.Is(err, ErrStopped) {
		t.Errorf("error %v: want ErrAccel and ErrStopped", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, "KVM internal error") || strings.Contains(msg, "RAX=") || strings.Contains(msg, "Code=") {
		t.Errorf("error should name the KVM error without the register dump:\n%s", msg)
	}
	if n.has("software emulation") {
		t.Errorf("-kvm on fell back:\n%s", &n)
	}
	if took > 5*time.Second {
		t.Errorf("took %s, want under 5s", took)
	}
}

// A guest that prints nothing is reported within the first-output
// deadline: 5 s under a hardware accelerator (then, in auto mode, TCG is
// tried), and as set under TCG; nothing is remembered when TCG fails too.
func TestSilentGuest(t *testing.T) {
	t.Run("kvm-on", func(t *testing.T) {
		fakeHost(t)
		var n notes
		_, took, err := bootFake(t, fakeConfig(t, "silent", "on", &n))
		if !errors.Is(err, ErrStalled) || !errors.Is(err, ErrAccel) {
			t.Fatalf("error %v: want ErrStalled and ErrAccel", err)
		}
		if took < 5*time.Second || took > 7*time.Second {
			t.Errorf("reported after %s, want about 5s", took)
		}
		if !n.has("waiting for the guest's first console output… ") && took > 5*time.Second {
			t.Logf("progress:\n%s", &n)
		}
	})
	t.Run("auto", func(t *testing.T) {
		fakeHost(t)
		var n notes
		c := fakeConfig(t, "silent", "auto", &n)
		c.Deadlines = Deadlines{FirstOutput: time.Second}
		_, took, err := bootFake(t, c)
		if !errors.Is(err, ErrStalled) || errors.Is(err, ErrAccel) {
			t.Fatalf("error %v: want ErrStalled under TCG, not ErrAccel", err)
		}
		if !strings.Contains(err.Error(), "before that, KVM failed") || !n.has("using software emulation") {
			t.Errorf("error should tell both attempts: %v\n%s", err, &n)
		}
		if took > 4*time.Second {
			t.Errorf("took %s with 1s deadlines", took)
		}
		if files, _ := filepath.Glob(filepath.Join(c.StateDir, "accel", "*")); len(files) != 0 {
			t.Errorf("a verdict was remembered although TCG failed too: %v", files)
		}
	})
}

// QEMU that exits at once is reported at once, under TCG without any
// accelerator probe (-kvm off, or SUPERMACHINE_QEMU_ACCEL=tcg).
func TestExitAtOnce(t *testing.T) {
	for _, how := range []string{"kvm=off", "env=tcg"} {
		t.Run(how, func(t *testing.T) {
			opens := fakeHost(t)
			var n notes
			c := fakeConfig(t, "exit", "off", &n)
			if how == "env=tcg" {
				c.KVM = "auto"
				t.Setenv(AccelEnv, "tcg")
			}
			_, took, err := bootFake(t, c)
			if !errors.Is(err, ErrExited) || errors.Is(err, ErrAccel) {
				t.Fatalf("error %v: want ErrExited", err)
			}
			if !strings.Contains(err.Error(), "Could not open '/nonexistent'") {
				t.Errorf("error lacks QEMU's message: %v", err)
			}
			if *opens != 0 {
				t.Errorf("/dev/kvm probed %d times under %s", *opens, how)
			}
			if took > 3*time.Second {
				t.Errorf("took %s", took)
			}
		})
	}
}

func TestDefaultDeadlines(t *testing.T) {
	if d := DefaultDeadlines(KVM); d.FirstOutput != 5*time.Second || d.Silence != 5*time.Second {
		t.Errorf("KVM deadlines %+v, want 5s", d)
	}
	if d := DefaultDeadlines(TCG); d.FirstOutput != 30*time.Second || d.Silence != 30*time.Second {
		t.Errorf("TCG deadlines %+v, want 30s", d)
	}
	if d := (Deadlines{Silence: time.Second}).withDefaults(TCG); d.Silence != time.Second || d.Start != 10*time.Second {
		t.Errorf("withDefaults kept %+v", d)
	}
}

// macOS: an arm64 guest on an arm64 Mac uses Hypervisor.framework with
// -cpu host and falls back like KVM; other guests use TCG.
func TestAcceleratorChoice(t *testing.T) {
	for _, tc := range []struct{ goos, host, guest, want string }{
		{"linux", "amd64", "amd64", KVM},
		{"linux", "arm64", "arm64", KVM},
		{"linux", "amd64", "arm64", ""},
		{"darwin", "arm64", "arm64", HVF},
		{"darwin", "arm64", "amd64", ""},
		{"windows", "amd64", "amd64", ""},
	} {
		if got, why := hardwareAccel(tc.goos, tc.host, tc.guest); got != tc.want || (got == "" && why == "") {
			t.Errorf("hardwareAccel(%s, %s, %s) = %q, %q; want %q", tc.goos, tc.host, tc.guest, got, why, tc.want)
		}
	}
	_, args, err := Config{Arch: "arm64", Kernel: "Image"}.Args(HVF)
	if err != nil {
		t.Fatal(err)
	}
	if s := strings.Join(args, " "); !strings.Contains(s, "-accel hvf -cpu host") {
		t.Errorf("HVF args: %s", s)
	}

	// The choice itself on a Mac, with a fake QEMU binary.
	fakeHost(t)
	old := hostOS
	hostOS = "darwin"
	defer func() { hostOS = old }()
	var n notes
	c := fakeConfig(t, "boots", "auto", &n)
	c.Arch = runtime.GOARCH
	ch, err := c.choose(c.Arch, c.Binary)
	if err != nil {
		t.Fatal(err)
	}
	if ch.accel != HVF || !ch.fallback {
		t.Errorf("darwin choice %+v, want hvf with fallback", ch)
	}
	other := map[string]string{"amd64": "arm64", "arm64": "amd64"}[runtime.GOARCH]
	if ch, _ := c.choose(other, c.Binary); ch.accel != TCG {
		t.Errorf("darwin, %s guest: %+v, want tcg", other, ch)
	}
}

// QEMU exiting while ConnectAgent runs its handshake must not leave a
// connected client behind: every attempt either returns a client (closed
// here) or an error, and afterwards no descriptor stays open.
func TestConnectAgentRacesExit(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("counts /proc/self/fd")
	}
	fakeHost(t)
	countFDs := func() int {
		ents, _ := os.ReadDir("/proc/self/fd")
		return len(ents)
	}
	before, goBefore := countFDs(), runtime.NumGoroutine()
	ctx := context.Background()
	won, lost := 0, 0
	for i := 0; i < 20; i++ {
		var n notes
		c := fakeConfig(t, "boots", "off", &n)
		vm, err := Start(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		go func(d time.Duration) {
			time.Sleep(d)
			vm.Kill()
		}(time.Duration(i%10) * time.Millisecond)
		cl, err := vm.ConnectAgent(ctx)
		if err == nil {
			won++
			cl.Close()
		} else {
			lost++
		}
		vm.Kill()
	}
	deadline := time.Now().Add(3 * time.Second)
	for (countFDs() > before || runtime.NumGoroutine() > goBefore) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if after := countFDs(); after > before {
		t.Errorf("%d descriptors open before, %d after 20 races (%d connected, %d failed)", before, after, won, lost)
	}
	if after := runtime.NumGoroutine(); after > goBefore {
		t.Errorf("%d goroutines before, %d after 20 races: a client or watcher leaked", goBefore, after)
	}
	t.Logf("%d connected, %d failed", won, lost)
}

// A handshake that hangs while the guest is silent is tried again on a
// new connection, well before the phase deadline.
func TestConnectAgentRetriesStalledHandshake(t *testing.T) {
	fakeHost(t)
	var n notes
	c := fakeConfig(t, "stuck-once", "off", &n)
	c.Deadlines = Deadlines{Silence: 4 * time.Second}
	_, took, err := bootFake(t, c)
	if err != nil {
		t.Fatalf("boot: %v", err)
	}
	if took < time.Second || took > 3*time.Second {
		t.Errorf("connected after %s, want a retry after about 1s (Silence/4)", took)
	}
}

// A handshake unanswered after the guest opened the agent's port is tried
// again on a new connection within portAnswer, however long the silence
// deadline: the guest missed that the host side is connected.
func TestConnectAgentRetriesUnansweredOpenPort(t *testing.T) {
	fakeHost(t)
	var n notes
	c := fakeConfig(t, "stuck-once-port", "off", &n)
	c.Deadlines = Deadlines{Silence: time.Minute}
	_, took, err := bootFake(t, c)
	if err != nil {
		t.Fatalf("boot: %v", err)
	}
	if took < portAnswer.Initial || took > portAnswer.Initial+2*time.Second {
		t.Errorf("connected after %s, want a retry after about %s", took, portAnswer.Initial)
	}
	if !strings.Contains(n.String(), "connecting to it again") {
		t.Errorf("the retry was not reported: %q", n.String())
	}
}

func TestKVMAccessHint(t *testing.T) {
	for group, want := range map[string]string{"kvm": "join the group kvm", "root": "only root may use it here", "": "usermod -aG kvm"} {
		if got := kvmAccessHint(group); !strings.Contains(got, want) {
			t.Errorf("kvmAccessHint(%q) = %q, want it to say %q", group, got, want)
		}
	}
}
