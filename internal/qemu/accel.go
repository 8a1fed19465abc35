package qemu

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/supermachine-go/supermachine-kernel/internal/atomicfile"
	"github.com/supermachine-go/supermachine-kernel/internal/lifetime"
	"github.com/supermachine-go/supermachine-kernel/kernel"
)

// Accelerators QEMU runs guests with.
const (
	KVM = "kvm" // Linux KVM
	HVF = "hvf" // Apple's Hypervisor.framework (macOS)
	TCG = "tcg" // QEMU's software emulation: works everywhere, slower
)

// Environment variables read by the accelerator choice.
const (
	// AccelEnv forces the accelerator when Config.KVM is "auto" (or
	// empty): kvm or hvf (hardware, no fallback) or tcg.
	AccelEnv = "SUPERMACHINE_QEMU_ACCEL"
	// ForgetEnv, set to 1, makes the next boots ignore (and delete) the
	// remembered verdict that the hardware accelerator cannot run the
	// guest here, so they try it again.
	ForgetEnv = "SUPERMACHINE_QEMU_FORGET_ACCEL"
)

// mode is the accelerator policy of a boot: "auto", "on" or "off".
func (c Config) mode() (string, error) {
	switch c.KVM {
	case "on", "off":
		return c.KVM, nil
	case "", "auto":
	default:
		return "", fmt.Errorf("qemu: KVM %q: want auto, on or off", c.KVM)
	}
	switch v := os.Getenv(AccelEnv); v {
	case "", "auto":
		return "auto", nil
	case KVM, HVF, "on":
		return "on", nil
	case TCG, "off":
		return "off", nil
	default:
		return "", fmt.Errorf("qemu: %s=%q: want kvm, hvf, tcg or auto", AccelEnv, v)
	}
}

// hostOS is runtime.GOOS; tests replace it.
var hostOS = runtime.GOOS

// hardwareAccel names the hardware accelerator QEMU can use on host
// goos/hostArch for a guest of guestArch, or says why there is none.
func hardwareAccel(goos, hostArch, guestArch string) (accel, whyNot string) {
	if guestArch != hostArch {
		return "", fmt.Sprintf("a %s guest on a %s host needs software emulation", guestArch, hostArch)
	}
	switch goos {
	case "linux":
		return KVM, ""
	case "darwin":
		return HVF, ""
	}
	return "", "no hardware accelerator is known on " + goos
}

// accelOpens checks that the process may use accel: /dev/kvm opens for
// reading and writing (Hypervisor.framework has no device to probe).
// Tests replace it.
var accelOpens = func(accel string) error {
	if accel != KVM {
		return nil
	}
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("%w: %s", err, kvmAccessHint(fileGroup("/dev/kvm")))
	}
	if err != nil {
		return err
	}
	return f.Close()
}

// kvmAccessHint says how a user gets access to /dev/kvm owned by group.
func kvmAccessHint(group string) string {
	switch group {
	case "", "root", "0":
		return "only root may use it here; udev's default rules make it root:kvm mode 0660, and a member of kvm may use it (sudo usermod -aG kvm $USER, then log in again)"
	}
	return fmt.Sprintf("join the group %s, which owns it (sudo usermod -aG %s $USER, then log in again)", group, group)
}

// accelName is how messages call an accelerator.
func accelName(accel string) string {
	switch accel {
	case KVM:
		return "KVM"
	case HVF:
		return "Hypervisor.framework"
	}
	return "software emulation (TCG)"
}

// choice is the accelerator a boot starts with and whether it may fall
// back to TCG.
type choice struct {
	accel    string
	fallback bool   // auto mode: TCG if the hardware accelerator fails
	note     string // why TCG was chosen up front, for the progress line
	memo     *memo  // where a failure verdict is remembered; nil: nowhere
}

// choose resolves the accelerator policy of c for a guest of arch.
func (c Config) choose(arch, bin string) (choice, error) {
	mode, err := c.mode()
	if err != nil {
		return choice{}, err
	}
	hw, whyNot := hardwareAccel(hostOS, runtime.GOARCH, arch)
	switch mode {
	case "off":
		return choice{accel: TCG}, nil
	case "on":
		if hw == "" {
			return choice{}, fmt.Errorf("%w: %s", ErrAccel, whyNot)
		}
		if err := accelOpens(hw); err != nil {
			return choice{}, fmt.Errorf("%w: %s: %v", ErrAccel, accelName(hw), err)
		}
		return choice{accel: hw}, nil
	}
	if hw == "" {
		return choice{accel: TCG}, nil
	}
	if err := accelOpens(hw); err != nil {
		return choice{accel: TCG, note: fmt.Sprintf("%s is not usable (%v)", accelName(hw), err)}, nil
	}
	m := newMemo(c.StateDir, hw, bin, c.Kernel, c.KernelSHA256)
	if os.Getenv(ForgetEnv) == "1" {
		m.forget()
	} else if v, ok := m.recall(); ok {
		return choice{accel: TCG, note: fmt.Sprintf("%s could not run this guest here before (%s; remembered in %s; set %s=1 to try again)",
			accelName(hw), v.Reason, m.path, ForgetEnv)}, nil
	}
	return choice{accel: hw, fallback: true, memo: m}, nil
}

// verdict is a remembered finding that a hardware accelerator cannot run
// a guest kernel on this host with this QEMU.
type verdict struct {
	Accel        string    `json:"accel"`
	Reason       string    `json:"reason"`
	HostKernel   string    `json:"host_kernel"`
	QEMU         string    `json:"qemu"`
	QEMUVersion  string    `json:"qemu_version,omitempty"`
	KernelSHA256 string    `json:"kernel_sha256"`
	Time         time.Time `json:"time"`
}

// memo remembers verdicts per process and on disk, in
// <state dir>/accel/<key>.json, keyed by the accelerator, the host kernel
// release, the QEMU binary (path, size and modification time, which
// change with its version) and the guest kernel's SHA-256.
type memo struct {
	key, path string
	v         verdict
}

var (
	memoMu   sync.Mutex
	memoSeen = map[string]verdict{} // verdicts found or made by this process
)

func newMemo(stateDir, accel, bin, kernelPath, kernelSHA string) *memo {
	qemuID := bin
	if p, err := exec.LookPath(bin); err == nil {
		qemuID = p
		if fi, err := os.Stat(p); err == nil {
			qemuID = fmt.Sprintf("%s size=%d mtime=%d", p, fi.Size(), fi.ModTime().UnixNano())
		}
	}
	if kernelSHA == "" {
		kernelSHA = fileSHA256(kernelPath)
	}
	m := &memo{v: verdict{Accel: accel, HostKernel: hostKernelRelease(), QEMU: qemuID, KernelSHA256: kernelSHA}}
	sum := sha256.Sum256([]byte(strings.Join([]string{accel, m.v.HostKernel, qemuID, kernelSHA}, "\n")))
	m.key = hex.EncodeToString(sum[:16])
	if stateDir == "" {
		stateDir, _ = kernel.DefaultCacheDir()
	}
	if stateDir != "" {
		m.path = filepath.Join(stateDir, "accel", m.key+".json")
	}
	return m
}

// recall returns the remembered verdict, if any.
func (m *memo) recall() (verdict, bool) {
	memoMu.Lock()
	defer memoMu.Unlock()
	if v, ok := memoSeen[m.key]; ok {
		return v, true
	}
	if m.path == "" {
		return verdict{}, false
	}
	b, err := os.ReadFile(m.path)
	if err != nil {
		return verdict{}, false
	}
	var v verdict
	if json.Unmarshal(b, &v) != nil || v.Reason == "" {
		return verdict{}, false
	}
	memoSeen[m.key] = v
	return v, true
}

// remember records that the accelerator failed for reason. A verdict that
// cannot be written to disk is still kept for this process.
func (m *memo) remember(bin, reason string) error {
	v := m.v
	v.Reason, v.Time = reason, time.Now().UTC().Truncate(time.Second)
	v.QEMUVersion = qemuVersion(bin)
	memoMu.Lock()
	memoSeen[m.key] = v
	memoMu.Unlock()
	if m.path == "" {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(m.path), 0o755); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(v, "", "  ")
	return atomicfile.WriteFile(context.Background(), m.path, append(b, '\n'), 0o644)
}

// forget drops the verdict from this process and from disk.
func (m *memo) forget() {
	memoMu.Lock()
	delete(memoSeen, m.key)
	memoMu.Unlock()
	if m.path != "" {
		os.Remove(m.path)
	}
}

// ForgetAccelVerdicts deletes every remembered accelerator verdict in
// stateDir (default: the asset cache directory) and in this process.
func ForgetAccelVerdicts(stateDir string) error {
	memoMu.Lock()
	clear(memoSeen)
	memoMu.Unlock()
	if stateDir == "" {
		var err error
		if stateDir, err = kernel.DefaultCacheDir(); err != nil {
			return err
		}
	}
	err := os.RemoveAll(filepath.Join(stateDir, "accel"))
	if err != nil {
		return fmt.Errorf("qemu: forgetting accelerator verdicts: %w", err)
	}
	return nil
}

// qemuVersion is the first line of bin --version, or "".
func qemuVersion(bin string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := lifetime.Output(exec.CommandContext(ctx, bin, "--version"))
	if err != nil {
		return ""
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(line)
}

var (
	hashMu    sync.Mutex
	hashCache = map[string]string{} // "path size mtime" -> SHA-256
)

// fileSHA256 hashes the file at path once per process and file version.
func fileSHA256(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return "unreadable:" + path
	}
	id := fmt.Sprintf("%s %d %d", path, fi.Size(), fi.ModTime().UnixNano())
	hashMu.Lock()
	defer hashMu.Unlock()
	if h, ok := hashCache[id]; ok {
		return h
	}
	f, err := os.Open(path)
	if err != nil {
		return "unreadable:" + path
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "unreadable:" + path
	}
	s := hex.EncodeToString(h.Sum(nil))
	hashCache[id] = s
	return s
}
