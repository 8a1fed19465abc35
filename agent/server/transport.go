//go:build linux

package server

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/mdlayher/vsock"
	"golang.org/x/sys/unix"
)

// HostCID is the vsock context ID of the host. By default [ListenVsock]
// accepts connections only from it: other guests on the same host, and
// processes inside this guest (vsock loopback, CID 1), are refused.
const HostCID = vsock.Host

// ListenVsock listens on an AF_VSOCK port bound to VMADDR_CID_ANY (call it
// after devtmpfs is mounted: it needs /dev/vsock). Unless allowAnyCID is
// set, connections from any peer but the host are closed at once, and
// logged through logf if it is not nil.
func ListenVsock(port uint32, allowAnyCID bool, logf func(string, ...any)) (net.Listener, error) {
	l, err := vsock.ListenContextID(unix.VMADDR_CID_ANY, port, nil)
	if err != nil {
		return nil, err
	}
	return &vsockListener{Listener: l, allowAny: allowAnyCID, logf: logf}, nil
}

type vsockListener struct {
	net.Listener
	allowAny bool
	logf     func(string, ...any)
}

func (l *vsockListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.allowAny {
			return c, nil
		}
		if a, ok := c.RemoteAddr().(*vsock.Addr); ok && a.ContextID == HostCID {
			return c, nil
		}
		if l.logf != nil {
			l.logf("vsock: refused connection from %v (only the host, CID %d, may connect)", c.RemoteAddr(), HostCID)
		}
		c.Close()
	}
}

// SerialPortsDir is where the kernel lists virtio-serial ports.
const SerialPortsDir = "/sys/class/virtio-ports"

// ErrNoSerialPort means no virtio-serial port has the wanted name.
var ErrNoSerialPort = errors.New("no such virtio-serial port")

// FindSerialPort returns the device path (/dev/vportNpM) of the
// virtio-serial port with the given name, as listed in
// /sys/class/virtio-ports/*/name.
func FindSerialPort(name string) (string, error) {
	dirs, _ := filepath.Glob(filepath.Join(SerialPortsDir, "*"))
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "name"))
		if err == nil && strings.TrimSpace(string(b)) == name {
			return "/dev/" + filepath.Base(d), nil
		}
	}
	return "", fmt.Errorf("%w %q under %s", ErrNoSerialPort, name, SerialPortsDir)
}

// OpenSerialPort opens a virtio-serial port device for [Server.ServeStream].
// While the host side is closed, reads of the port return end-of-file; the
// returned stream reports that once as [ErrHangup] and then polls until the
// host is back.
func OpenSerialPort(path string) (io.ReadWriteCloser, error) {
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	return &serialPort{f: f}, nil
}

type serialPort struct {
	f      *os.File
	mu     sync.Mutex
	hungUp bool
}

func (p *serialPort) Read(b []byte) (int, error) {
	for {
		n, err := p.f.Read(b)
		if n > 0 {
			p.mu.Lock()
			p.hungUp = false
			p.mu.Unlock()
			return n, nil
		}
		if err != nil && err != io.EOF {
			return 0, err
		}
		p.mu.Lock()
		first := !p.hungUp
		p.hungUp = true
		p.mu.Unlock()
		if first {
			return 0, ErrHangup
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *serialPort) Write(b []byte) (int, error) { return p.f.Write(b) }
func (p *serialPort) Close() error                { return p.f.Close() }
