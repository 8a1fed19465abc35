//go:build linux

package server

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/supermachine-go/supermachine-kernel/agent/pid1"
	"github.com/supermachine-go/supermachine-kernel/agent/protocol"
	"golang.org/x/sys/unix"
)

// control serves the methods that are one request and one response.
func (s *Server) control(st *yamux.Stream, req *protocol.Request) {
	var resp any = struct{}{}
	var perr *protocol.Error
	switch req.Method {
	case protocol.MethodPing:
	case protocol.MethodVersion:
		resp = protocol.VersionInfo{AgentVersion: s.cfg.Version, ProtocolVersion: protocol.Version}
	case protocol.MethodInfo:
		resp = s.info()
	case protocol.MethodSync:
		unix.Sync()
	case protocol.MethodSetTime:
		t := time.Unix(0, req.Time.UnixNano)
		var err error
		if s.cfg.SetClockHook != nil {
			err = s.cfg.SetClockHook(t)
		} else {
			ts := unix.NsecToTimespec(req.Time.UnixNano)
			err = os.NewSyscallError("clock_settime", unix.ClockSettime(unix.CLOCK_REALTIME, &ts))
		}
		if err != nil {
			perr = protocol.ErrorFrom(err, "set_time", "")
		}
	case protocol.MethodPowerOff, protocol.MethodReboot:
		reboot := req.Method == protocol.MethodReboot
		hook := s.cfg.PowerHook
		if hook == nil && os.Getpid() != 1 {
			perr = &protocol.Error{Code: protocol.CodeNotPermitted, Op: req.Method,
				Message: "refused: the agent is not PID 1 (and no test hook is set)"}
			break
		}
		unix.Sync()
		if hook == nil {
			hook = pid1.PowerOff
		}
		// Answer first, then act: the reply must leave before the machine
		// goes away.
		defer func() {
			go func() {
				time.Sleep(100 * time.Millisecond)
				if err := hook(reboot); err != nil {
					s.logf("%s: %v", req.Method, err)
				}
			}()
		}()
	default:
		perr = &protocol.Error{Code: protocol.CodeUnknownMethod, Message: fmt.Sprintf("unknown method %q", req.Method)}
	}
	if perr != nil {
		sendError(st, perr)
		return
	}
	sendResponse(st, resp)
}

func (s *Server) info() protocol.Info {
	in := protocol.Info{
		AgentVersion:    s.cfg.Version,
		ProtocolVersion: protocol.Version,
		Arch:            runtime.GOARCH,
		NumCPU:          runtime.NumCPU(),
		Pid:             os.Getpid(),
	}
	var uts unix.Utsname
	if unix.Uname(&uts) == nil {
		in.KernelRelease = unix.ByteSliceToString(uts.Release[:])
		in.Hostname = unix.ByteSliceToString(uts.Nodename[:])
	}
	in.UptimeNS = int64(Uptime())
	if f, err := os.Open("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":")
			if !ok {
				continue
			}
			n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				continue
			}
			switch k {
			case "MemTotal":
				in.MemTotal = n << 10
			case "MemFree":
				in.MemFree = n << 10
			case "MemAvailable":
				in.MemAvailable = n << 10
			}
		}
		f.Close()
	}
	if in.MemTotal == 0 {
		var si unix.Sysinfo_t
		if unix.Sysinfo(&si) == nil {
			in.MemTotal = uint64(si.Totalram) * uint64(si.Unit)
			in.MemFree = uint64(si.Freeram) * uint64(si.Unit)
		}
	}
	return in
}

// Uptime returns the time since the kernel booted: CLOCK_BOOTTIME, the
// clock of /proc/uptime, to the nanosecond (/proc/uptime has hundredths
// of a second), or /proc/uptime if the clock cannot be read.
func Uptime() time.Duration {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts) == nil {
		return time.Duration(ts.Nano())
	}
	if b, err := os.ReadFile("/proc/uptime"); err == nil {
		if f := bytes.Fields(b); len(f) > 0 {
			if sec, err := strconv.ParseFloat(string(f[0]), 64); err == nil {
				return time.Duration(sec * float64(time.Second))
			}
		}
	}
	return 0
}
