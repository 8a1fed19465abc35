package protocol

import (
	"encoding/json"
	"fmt"
	"path"
	"strings"
)

// Methods: the Method of a [Request].
const (
	MethodPing      = "ping"       // no params; response {}
	MethodVersion   = "version"    // no params; response VersionInfo
	MethodInfo      = "info"       // no params; response Info
	MethodExec      = "exec"       // params Exec; see PROTOCOL.md for the frames
	MethodExecStdin = "exec_stdin" // params ExecStdin; stdin frames follow; response {}
	MethodWriteFile = "write_file" // params File; data frames follow; response FileInfo
	MethodReadFile  = "read_file"  // params File (Path only); response FileInfo, then data frames
	MethodSync      = "sync"       // no params; response {}
	MethodSetTime   = "set_time"   // params Time; response {}
	MethodPowerOff  = "power_off"  // no params; response {}, then the guest powers off
	MethodReboot    = "reboot"     // no params; response {}, then the guest reboots
)

// Limits on request contents, checked by [DecodeRequest]. The whole request
// must also fit in one frame ([MaxFrameSize]).
const (
	MaxArgs     = 1 << 16 // argv entries
	MaxEnv      = 1 << 16 // environment entries
	MaxPathLen  = 4096    // bytes in a path, like PATH_MAX
	MaxUserLen  = 256     // bytes in an exec user spec
	MaxFileMode = 0o7777  // permission, setuid, setgid and sticky bits
)

// Request is the JSON payload of a [FrameRequest]: the method and its
// parameters. Unknown JSON fields are ignored, so newer clients can add
// optional fields.
type Request struct {
	Method string       `json:"method"`
	Exec   *ExecRequest `json:"exec,omitempty"`
	// ExecStdin are the parameters of [MethodExecStdin].
	ExecStdin *ExecStdinRequest `json:"exec_stdin,omitempty"`
	File      *FileRequest      `json:"file,omitempty"`
	Time      *TimeRequest      `json:"time,omitempty"`
}

// ExecRequest are the parameters of [MethodExec].
type ExecRequest struct {
	// Path is the program to run; if it has no slash it is looked up in
	// the PATH of the merged environment. Empty means Args[0].
	Path string `json:"path,omitempty"`
	// Args is the argv, Args[0] included; it must not be empty.
	Args []string `json:"args"`
	// Env are KEY=value entries merged over the agent's default
	// environment (PATH, HOME and, with a tty, TERM).
	Env []string `json:"env,omitempty"`
	// Dir is the working directory; empty means the user's home or "/".
	Dir string `json:"dir,omitempty"`
	// User is "", "uid", "uid:gid", "name" or "name:group".
	User string `json:"user,omitempty"`
	// TTY runs the process on a new pseudo-terminal of Rows x Cols.
	TTY  bool   `json:"tty,omitempty"`
	Rows uint16 `json:"rows,omitempty"`
	Cols uint16 `json:"cols,omitempty"`
	// Stdin, Stdout and Stderr say which streams the client attaches;
	// omitted (false) ones are /dev/null: output not attached is dropped.
	// Without TTY, stdin data comes on an [MethodExecStdin] stream. With
	// TTY, the single pty stream is attached when Stdin or Stdout is.
	Stdin  bool `json:"stdin,omitempty"`
	Stdout bool `json:"stdout,omitempty"`
	Stderr bool `json:"stderr,omitempty"`
	// TimeoutNS, if positive, kills the process group after that many
	// nanoseconds; the result then has TimedOut set.
	TimeoutNS int64 `json:"timeout_ns,omitempty"`
	// OutputGraceNS is how long the server keeps forwarding output after
	// the process exited while other processes (started in the
	// background) still hold it open: 0 means the server's default
	// (1 s), a negative value means until they close it.
	OutputGraceNS int64 `json:"output_grace_ns,omitempty"`
}

// ExecStdinRequest are the parameters of [MethodExecStdin]: the exec whose
// standard input the stream carries.
type ExecStdinRequest struct {
	// Stream is the yamux stream ID of the exec, in the same session.
	Stream uint32 `json:"stream"`
}

// ExecStarted is the [FrameResponse] of an exec: the process started.
type ExecStarted struct {
	Pid int `json:"pid"`
}

// ExitResult is the payload of [FrameExit], the last frame of an exec.
type ExitResult struct {
	// ExitCode is the exit status, or -1 if a signal killed the process.
	ExitCode int `json:"exit_code"`
	// Signal is the name of the signal that killed the process, if any.
	Signal string `json:"signal,omitempty"`
	// DurationNS is the wall time from start to exit.
	DurationNS int64 `json:"duration_ns"`
	// MaxRSS is the peak resident set size in bytes (rusage ru_maxrss).
	MaxRSS int64 `json:"max_rss"`
	// TimedOut is set if the agent killed the process at its timeout.
	TimedOut bool `json:"timed_out,omitempty"`
}

// FileRequest are the parameters of [MethodWriteFile] and [MethodReadFile].
type FileRequest struct {
	// Path is an absolute path in the guest.
	Path string `json:"path"`
	// Mode are the Unix permission bits (0o7777 at most) of a written file.
	Mode uint32 `json:"mode,omitempty"`
	// UID and GID, if set, own the written file.
	UID *int `json:"uid,omitempty"`
	GID *int `json:"gid,omitempty"`
	// MkdirParents creates missing parent directories (mode 0755).
	MkdirParents bool `json:"mkdir_parents,omitempty"`
}

// FileInfo answers file methods: size and Unix mode bits of the file.
type FileInfo struct {
	Size int64  `json:"size"`
	Mode uint32 `json:"mode"`
}

// TimeRequest are the parameters of [MethodSetTime].
type TimeRequest struct {
	// UnixNano is the new CLOCK_REALTIME in nanoseconds since 1970.
	UnixNano int64 `json:"unix_nano"`
}

// VersionInfo answers [MethodVersion].
type VersionInfo struct {
	AgentVersion    string `json:"agent_version"`
	ProtocolVersion int    `json:"protocol_version"`
}

// Info answers [MethodInfo].
type Info struct {
	AgentVersion    string `json:"agent_version"`
	ProtocolVersion int    `json:"protocol_version"`
	KernelRelease   string `json:"kernel_release"`
	Arch            string `json:"arch"`
	Hostname        string `json:"hostname,omitempty"`
	UptimeNS        int64  `json:"uptime_ns"`
	MemTotal        uint64 `json:"mem_total"`
	MemFree         uint64 `json:"mem_free"`
	MemAvailable    uint64 `json:"mem_available"`
	NumCPU          int    `json:"num_cpu"`
	Pid             int    `json:"pid"`
}

// Marshal encodes a message as JSON.
func Marshal(v any) ([]byte, error) {
	return json.Marshal(v)
}

// Unmarshal decodes a JSON message into v, which must be a pointer. Errors
// wrap [ErrMalformed].
func Unmarshal(b []byte, v any) error {
	if len(b) == 0 || len(b) > MaxFrameSize {
		return fmt.Errorf("%w: message of %d bytes", ErrMalformed, len(b))
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return nil
}

// DecodeRequest decodes and validates a [FrameRequest] payload. A payload
// that is not a JSON object wraps [ErrMalformed]; a request that names no
// known method wraps [ErrUnknownMethod]; parameters that are missing or out
// of range wrap [ErrInvalid].
func DecodeRequest(b []byte) (*Request, error) {
	var r Request
	if err := Unmarshal(b, &r); err != nil {
		return nil, err
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return &r, nil
}

// Validate checks a request's method and parameters.
func (r *Request) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrInvalid, r.Method, fmt.Sprintf(format, args...))
	}
	switch r.Method {
	case MethodPing, MethodVersion, MethodInfo, MethodSync, MethodPowerOff, MethodReboot:
		return nil
	case MethodExec:
		e := r.Exec
		if e == nil {
			return bad("missing exec parameters")
		}
		if len(e.Args) == 0 || e.Args[0] == "" && e.Path == "" {
			return bad("empty argv")
		}
		if len(e.Args) > MaxArgs || len(e.Env) > MaxEnv {
			return bad("too many args or env entries")
		}
		for _, s := range e.Args {
			if strings.IndexByte(s, 0) >= 0 {
				return bad("NUL byte in argument")
			}
		}
		for _, s := range e.Env {
			if strings.IndexByte(s, 0) >= 0 || strings.IndexByte(s, '=') <= 0 {
				return bad("bad environment entry %q", s)
			}
		}
		if err := checkPath(e.Path, false); err != nil {
			return bad("path: %v", err)
		}
		if err := checkPath(e.Dir, false); err != nil {
			return bad("dir: %v", err)
		}
		if len(e.User) > MaxUserLen || strings.IndexByte(e.User, 0) >= 0 {
			return bad("bad user")
		}
		if e.TimeoutNS < 0 {
			return bad("negative timeout")
		}
		return nil
	case MethodExecStdin:
		if r.ExecStdin == nil || r.ExecStdin.Stream == 0 {
			return bad("missing exec stream")
		}
		return nil
	case MethodWriteFile, MethodReadFile:
		f := r.File
		if f == nil {
			return bad("missing file parameters")
		}
		if f.Path == "" {
			return bad("empty path")
		}
		if err := checkPath(f.Path, true); err != nil {
			return bad("%v", err)
		}
		if f.Mode > MaxFileMode {
			return bad("mode %#o out of range", f.Mode)
		}
		if f.UID != nil && (*f.UID < 0 || *f.UID > 1<<32-2) || f.GID != nil && (*f.GID < 0 || *f.GID > 1<<32-2) {
			return bad("uid or gid out of range")
		}
		return nil
	case MethodSetTime:
		if r.Time == nil {
			return bad("missing time parameters")
		}
		if r.Time.UnixNano <= 0 {
			return bad("time before 1970")
		}
		return nil
	}
	return fmt.Errorf("%w %q", ErrUnknownMethod, r.Method)
}

func checkPath(p string, abs bool) error {
	if len(p) > MaxPathLen {
		return fmt.Errorf("path longer than %d bytes", MaxPathLen)
	}
	if strings.IndexByte(p, 0) >= 0 {
		return fmt.Errorf("NUL byte in path")
	}
	if abs && (!path.IsAbs(p) || path.Clean(p) == "/") {
		return fmt.Errorf("path %q is not an absolute file path", p)
	}
	return nil
}

// DecodeExit decodes a [FrameExit] payload.
func DecodeExit(b []byte) (*ExitResult, error) {
	var x ExitResult
	if err := Unmarshal(b, &x); err != nil {
		return nil, err
	}
	if x.Signal != "" && !validSignalSyntax(x.Signal) {
		return nil, fmt.Errorf("%w: exit: bad signal name %q", ErrMalformed, x.Signal)
	}
	return &x, nil
}

// DecodeError decodes a [FrameError] payload. The returned error is the
// decoded *[Error], or an error wrapping [ErrMalformed].
func DecodeError(b []byte) *Error {
	var e Error
	if err := Unmarshal(b, &e); err != nil {
		return &Error{Code: CodeProtocol, Message: "undecodable error frame: " + err.Error()}
	}
	if e.Code == "" {
		e.Code = CodeInternal
	}
	return &e
}
