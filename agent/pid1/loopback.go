//go:build linux

package pid1

import (
	"os"

	"golang.org/x/sys/unix"
)

// LoopbackUp brings the "lo" interface up with the SIOCGIFFLAGS and
// SIOCSIFFLAGS ioctls. The kernel then configures 127.0.0.1/8 and ::1 on it
// by itself.
func LoopbackUp() error {
	return InterfaceUp("lo")
}

// InterfaceUp sets IFF_UP on the named network interface.
func InterfaceUp(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return os.NewSyscallError("ioctl SIOCGIFFLAGS "+name, err)
	}
	flags := ifr.Uint16()
	if flags&unix.IFF_UP != 0 {
		return nil
	}
	ifr.SetUint16(flags | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return os.NewSyscallError("ioctl SIOCSIFFLAGS "+name, err)
	}
	return nil
}
