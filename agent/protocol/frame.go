package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// FrameType is the first byte of every frame on an RPC stream.
type FrameType uint8

// Frame types. "C→S" frames are sent by the client, "S→C" by the server.
const (
	// FrameRequest (C→S, JSON [Request]) is the first frame of every RPC
	// stream and names the method.
	FrameRequest FrameType = 1
	// FrameResponse (S→C, JSON; the type depends on the method) is the
	// successful answer of a method, or for exec the [ExecStarted] notice.
	FrameResponse FrameType = 2
	// FrameError (S→C, JSON [Error]) reports a failure; the server closes
	// the stream after it.
	FrameError FrameType = 3
	// FrameStdin (C→S, raw bytes) is data for the process's stdin.
	FrameStdin FrameType = 4
	// FrameStdinEOF (C→S, empty) closes the process's stdin.
	FrameStdinEOF FrameType = 5
	// FrameStdout (S→C, raw bytes) is process output (the pty for a tty).
	FrameStdout FrameType = 6
	// FrameStderr (S→C, raw bytes) is process error output.
	FrameStderr FrameType = 7
	// FrameResize (C→S, 4 bytes: rows, cols as big-endian uint16) resizes
	// the process's terminal.
	FrameResize FrameType = 8
	// FrameSignal (C→S, one of [SignalNames] in ASCII, e.g. "SIGTERM")
	// sends a signal to the process group.
	FrameSignal FrameType = 9
	// FrameExit (S→C, JSON [ExitResult]) is the last frame of an exec.
	FrameExit FrameType = 10
	// FrameData (both ways, raw bytes) is a chunk of file content.
	FrameData FrameType = 11
	// FrameDataEOF (both ways, empty) ends file content.
	FrameDataEOF FrameType = 12

	maxFrameType = FrameDataEOF
)

var frameNames = [...]string{
	FrameRequest: "request", FrameResponse: "response", FrameError: "error",
	FrameStdin: "stdin", FrameStdinEOF: "stdin-eof", FrameStdout: "stdout",
	FrameStderr: "stderr", FrameResize: "resize", FrameSignal: "signal",
	FrameExit: "exit", FrameData: "data", FrameDataEOF: "data-eof",
}

// String returns the frame type's name, e.g. "stdout".
func (t FrameType) String() string {
	if t >= FrameRequest && t <= maxFrameType {
		return frameNames[t]
	}
	return fmt.Sprintf("FrameType(%d)", uint8(t))
}

// HeaderSize is the size of a frame header: the type byte and the payload
// length as a big-endian uint32.
const HeaderSize = 5

// MaxFrameSize is the hard limit on a frame's payload length. A reader
// rejects a larger length with [ErrFrameTooLarge] before allocating
// anything. Data frames are at most this big; writers split larger data.
const MaxFrameSize = 1 << 20

// MaxSignalName is the longest payload of a [FrameSignal].
const MaxSignalName = 32

// Frame errors.
var (
	// ErrFrameTooLarge means a frame header announced a payload larger than
	// MaxFrameSize.
	ErrFrameTooLarge = errors.New("protocol: frame too large")
	// ErrUnknownFrame means a frame type this version does not know.
	ErrUnknownFrame = errors.New("protocol: unknown frame type")
	// ErrMalformed means a frame or message that does not decode, or whose
	// content is invalid.
	ErrMalformed = errors.New("protocol: malformed message")
)

// AppendFrameHeader appends a frame header for a payload of n bytes.
func AppendFrameHeader(b []byte, t FrameType, n int) []byte {
	b = append(b, byte(t))
	return binary.BigEndian.AppendUint32(b, uint32(n))
}

// PutFrameHeader writes a frame header for a payload of n bytes into
// b[:HeaderSize]. Writers that read data into a buffer right after a
// reserved header use it to send a frame in a single Write.
func PutFrameHeader(b []byte, t FrameType, n int) {
	b[0] = byte(t)
	binary.BigEndian.PutUint32(b[1:HeaderSize], uint32(n))
}

// WriteFrame writes one frame. Small frames go out in a single Write call;
// callers sharing w between goroutines must still serialize WriteFrame
// calls themselves.
func WriteFrame(w io.Writer, t FrameType, payload []byte) error {
	if len(payload) > MaxFrameSize {
		return fmt.Errorf("%w: %d bytes", ErrFrameTooLarge, len(payload))
	}
	if len(payload) <= 32<<10 {
		b := make([]byte, 0, HeaderSize+len(payload))
		b = AppendFrameHeader(b, t, len(payload))
		_, err := w.Write(append(b, payload...))
		return err
	}
	var h [HeaderSize]byte
	PutFrameHeader(h[:], t, len(payload))
	if _, err := w.Write(h[:]); err != nil {
		return err
	}
	_, err := w.Write(payload)
	return err
}

// ReadFrame reads one frame from r. The payload is read into buf when it fits
// (so a caller reusing buf must consume the payload before the next call),
// otherwise into a new slice. The length is checked against [MaxFrameSize]
// and the type and fixed-size payloads are validated before the payload is
// read. io.EOF is returned only when r ends cleanly between frames.
func ReadFrame(r io.Reader, buf []byte) (FrameType, []byte, error) {
	t, n, err := ReadFrameHeader(r)
	if err != nil {
		return t, nil, err
	}
	var p []byte
	if int(n) <= cap(buf) {
		p = buf[:n]
	} else {
		p = make([]byte, n)
	}
	if _, err := io.ReadFull(r, p); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			err = fmt.Errorf("%w: %s frame truncated (want %d bytes)", ErrMalformed, t, n)
		}
		return t, nil, err
	}
	if t == FrameSignal && SignalNumber(string(p)) == 0 {
		return t, nil, fmt.Errorf("%w: unknown signal name %q", ErrMalformed, p)
	}
	return t, p, nil
}

// ReadFrameHeader reads one frame header from r and checks the type and
// the length as [ReadFrame] does; the caller then reads the n payload
// bytes itself, for example straight into a buffer of its own. io.EOF is
// returned only when r ends cleanly between frames.
func ReadFrameHeader(r io.Reader) (t FrameType, n int, err error) {
	var h [HeaderSize]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		if err == io.ErrUnexpectedEOF {
			err = fmt.Errorf("%w: truncated frame header", ErrMalformed)
		}
		return 0, 0, err
	}
	t = FrameType(h[0])
	size := binary.BigEndian.Uint32(h[1:])
	if err := checkFrame(t, size); err != nil {
		return t, 0, err
	}
	return t, int(size), nil
}

func checkFrame(t FrameType, n uint32) error {
	if t < FrameRequest || t > maxFrameType {
		return fmt.Errorf("%w %d", ErrUnknownFrame, uint8(t))
	}
	if n > MaxFrameSize {
		return fmt.Errorf("%w: %s frame of %d bytes exceeds the limit of %d", ErrFrameTooLarge, t, n, MaxFrameSize)
	}
	switch t {
	case FrameStdinEOF, FrameDataEOF:
		if n != 0 {
			return fmt.Errorf("%w: %s frame with a %d-byte payload", ErrMalformed, t, n)
		}
	case FrameResize:
		if n != 4 {
			return fmt.Errorf("%w: resize frame of %d bytes, want 4", ErrMalformed, n)
		}
	case FrameSignal:
		if n == 0 || n > MaxSignalName {
			return fmt.Errorf("%w: signal frame of %d bytes", ErrMalformed, n)
		}
	case FrameRequest, FrameResponse, FrameError, FrameExit:
		if n == 0 {
			return fmt.Errorf("%w: empty %s frame", ErrMalformed, t)
		}
	}
	return nil
}

// EncodeResize returns the payload of a [FrameResize].
func EncodeResize(rows, cols uint16) []byte {
	b := binary.BigEndian.AppendUint16(nil, rows)
	return binary.BigEndian.AppendUint16(b, cols)
}

// DecodeResize decodes the payload of a [FrameResize].
func DecodeResize(p []byte) (rows, cols uint16, err error) {
	if len(p) != 4 {
		return 0, 0, fmt.Errorf("%w: resize payload of %d bytes", ErrMalformed, len(p))
	}
	return binary.BigEndian.Uint16(p), binary.BigEndian.Uint16(p[2:]), nil
}

// validSignalSyntax reports whether s is 1 to [MaxSignalName] characters of
// A-Z, 0-9, '_', '+' and '-': the syntax of the signal name of an
// [ExitResult], which may name a signal outside [SignalNames] (e.g. "SIG34"
// for a real-time signal).
func validSignalSyntax(s string) bool {
	if len(s) == 0 || len(s) > MaxSignalName {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '+' || c == '-') {
			return false
		}
	}
	return true
}
