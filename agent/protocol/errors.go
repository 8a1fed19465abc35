package protocol

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
)

// ErrUnknownMethod means a request named a method the server does not know.
var ErrUnknownMethod = errors.New("protocol: unknown method")

// ErrInvalid means a well-formed request whose parameters are missing or
// out of range (an empty argv, a relative file path, ...). It is
// fs.ErrInvalid, so errors.Is(err, fs.ErrInvalid) holds; the server reports
// it with code [CodeInvalid].
var ErrInvalid = fs.ErrInvalid

// Error codes carried by [Error]. Codes are stable strings; clients match on
// them (through errors.Is, see [Error.Is]), messages are for humans.
const (
	CodeProtocol      = "protocol"       // malformed, oversized or unexpected frame or message
	CodeUnknownMethod = "unknown_method" // request named an unknown method
	CodeNotFound      = "not_found"      // file, directory, program or user does not exist
	CodePermission    = "permission"     // permission denied
	CodeExist         = "exist"          // file exists
	CodeNotDir        = "not_dir"        // a path component is not a directory
	CodeIsDir         = "is_dir"         // path is a directory
	CodeInvalid       = "invalid"        // invalid argument (bad user spec, bad signal, ...)
	CodeNotPermitted  = "not_permitted"  // operation refused by policy (e.g. power off when not PID 1)
	CodeBusy          = "busy"           // resource busy, try again
	CodeInternal      = "internal"       // any other failure
)

// Error is a failure reported by the agent in a [FrameError]. It implements
// error; errors.Is maps its Code to the standard errors (fs.ErrNotExist,
// fs.ErrPermission, fs.ErrExist, fs.ErrInvalid) and to [ErrMalformed] and
// [ErrUnknownMethod].
type Error struct {
	// Code classifies the error; one of the Code constants.
	Code string `json:"code"`
	// Message is the agent's description of the failure.
	Message string `json:"message"`
	// Op is the failed operation, e.g. "exec", "chdir", "open", "rename".
	Op string `json:"op,omitempty"`
	// Path is the path the error is about, if any.
	Path string `json:"path,omitempty"`
}

// Error returns "agent: [op path: ]message".
func (e *Error) Error() string {
	s := "agent: "
	if e.Op != "" {
		s += e.Op + " "
	}
	if e.Path != "" {
		s += e.Path + ": "
	} else if e.Op != "" {
		s = s[:len(s)-1] + ": "
	}
	return s + e.Message
}

// Is reports whether target is the standard error matching e's code.
func (e *Error) Is(target error) bool {
	switch target {
	case fs.ErrNotExist:
		return e.Code == CodeNotFound
	case fs.ErrPermission:
		return e.Code == CodePermission || e.Code == CodeNotPermitted
	case fs.ErrExist:
		return e.Code == CodeExist
	case fs.ErrInvalid:
		return e.Code == CodeInvalid
	case ErrMalformed:
		return e.Code == CodeProtocol
	case ErrUnknownMethod:
		return e.Code == CodeUnknownMethod
	}
	return false
}

// ErrorFrom converts a Go error into an [Error], choosing the code from the
// errno or standard error it wraps and taking Op and Path from an
// *fs.PathError. op and path are used when err carries none.
func ErrorFrom(err error, op, path string) *Error {
	var pe *Error
	if errors.As(err, &pe) {
		return pe
	}
	e := &Error{Code: CodeInternal, Message: err.Error(), Op: op, Path: path}
	var pathErr *fs.PathError
	if errors.As(err, &pathErr) {
		e.Op, e.Path, e.Message = pathErr.Op, pathErr.Path, pathErr.Err.Error()
	}
	var se *os.SyscallError
	if errors.As(err, &se) && e.Op == "" {
		e.Op = se.Syscall
	}
	var errno syscall.Errno
	switch {
	case errors.As(err, &errno) && errno == syscall.ENOTDIR:
		e.Code = CodeNotDir
	case errors.As(err, &errno) && errno == syscall.EISDIR:
		e.Code = CodeIsDir
	case errors.As(err, &errno) && errno == syscall.EBUSY:
		e.Code = CodeBusy
	case errors.Is(err, fs.ErrNotExist):
		e.Code = CodeNotFound
	case errors.Is(err, fs.ErrPermission):
		e.Code = CodePermission
	case errors.Is(err, fs.ErrExist):
		e.Code = CodeExist
	case errors.Is(err, fs.ErrInvalid), errors.As(err, &errno) && errno == syscall.EINVAL:
		e.Code = CodeInvalid
	case errors.Is(err, ErrMalformed), errors.Is(err, ErrFrameTooLarge), errors.Is(err, ErrUnknownFrame):
		e.Code = CodeProtocol
	case errors.Is(err, ErrUnknownMethod):
		e.Code = CodeUnknownMethod
	}
	return e
}
