//go:build linux

package pid1

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// PowerOff syncs the filesystems and powers the machine off, or restarts
// it if reboot is true. Power-off falls back to a restart when the machine
// has no way to power off (a VMM without ACPI power-off treats a guest
// reboot as exit). It returns only on failure, for example when the caller
// lacks CAP_SYS_BOOT.
func PowerOff(reboot bool) error {
	unix.Sync()
	if !reboot && canPowerOff() {
		err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
		if err == nil {
			// Power-off is asynchronous on some machines; give it time
			// before falling back.
			time.Sleep(2 * time.Second)
		}
	}
	return os.NewSyscallError("reboot", unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART))
}

// canPowerOff reports whether the kernel has a power-off method. Without
// one, reboot(2) with POWER_OFF halts the machine for good ("System halted
// instead"), which leaves the VM running: x86-64 guests without ACPI (QEMU
// microvm with acpi=off, Firecracker) must restart instead, which their
// VMMs treat as exit. arm64 guests power off through PSCI.
func canPowerOff() bool {
	if runtime.GOARCH != "amd64" && runtime.GOARCH != "386" {
		return true
	}
	_, err := os.Stat("/sys/firmware/acpi")
	return err == nil
}

// Fatal reports err on the console (and on w, if not nil), then powers the
// machine off. It never returns: PID 1 must not exit, since that panics the
// kernel. If even the power-off fails, Fatal blocks forever.
func Fatal(w io.Writer, err error) {
	msg := fmt.Sprintf("supermachine-agent: fatal: %v; powering off\n", err)
	if w != nil {
		io.WriteString(w, msg)
	}
	if c, cerr := os.OpenFile("/dev/console", os.O_WRONLY|unix.O_NOCTTY, 0); cerr == nil {
		io.WriteString(c, msg)
		c.Close()
	}
	if os.Getpid() == 1 {
		if perr := PowerOff(false); perr != nil && w != nil {
			fmt.Fprintf(w, "supermachine-agent: power off: %v\n", perr)
		}
	} else {
		os.Exit(1)
	}
	select {}
}
