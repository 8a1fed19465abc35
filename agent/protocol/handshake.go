package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

// Version is the protocol version this package speaks. Both peers send it in
// their handshake messages; a peer that receives another version reports
// [ErrVersionMismatch] and does not start a session.
const Version = 1

// Magic starts every handshake message. It is what a server reading a
// long-lived stream (a virtio-serial port) scans for to find a new client
// among leftover bytes of an old session. Its first byte is not 0, so a yamux
// session that reads a handshake message as a frame header fails at once with
// an invalid yamux version, which ends the stale session.
var Magic = [6]byte{'S', 'M', 'A', 'G', 'N', 'T'}

// HelloSize is the size in bytes of every handshake message.
const HelloSize = 16

// HelloKind says which step of the handshake a [Hello] is.
type HelloKind byte

// The four handshake steps, in order. The client sends KindHello (possibly
// several times: on a stream transport it repeats it until it is answered),
// the server answers each with KindAck; the client then sends KindStart, and
// the server answers KindGo. The yamux session starts right after the
// KindStart message (client to server) and the KindGo message (server to
// client). Every message carries the client's nonce, which lets the client
// ignore answers meant for an earlier client of the same stream.
const (
	KindHello HelloKind = 'H'
	KindAck   HelloKind = 'A'
	KindStart HelloKind = 'S'
	KindGo    HelloKind = 'G'
)

func (k HelloKind) valid() bool {
	switch k {
	case KindHello, KindAck, KindStart, KindGo:
		return true
	}
	return false
}

// String returns the kind's name, e.g. "hello".
func (k HelloKind) String() string {
	switch k {
	case KindHello:
		return "hello"
	case KindAck:
		return "ack"
	case KindStart:
		return "start"
	case KindGo:
		return "go"
	}
	return fmt.Sprintf("HelloKind(%#x)", byte(k))
}

// Hello is one handshake message. On the wire it is [Magic], the kind byte,
// the protocol version byte and the 8-byte big-endian nonce: [HelloSize]
// bytes in all.
type Hello struct {
	Kind    HelloKind
	Version uint8
	Nonce   uint64
}

// Handshake errors.
var (
	// ErrBadMagic means the peer sent bytes that are not a handshake
	// message: it does not speak this protocol.
	ErrBadMagic = errors.New("protocol: bad handshake magic (peer is not a supermachine agent or client)")
	// ErrVersionMismatch means the peer speaks another protocol version.
	ErrVersionMismatch = errors.New("protocol: protocol version mismatch")
	// ErrTooMuchJunk means a handshake scan skipped more bytes than allowed
	// without finding a handshake message.
	ErrTooMuchJunk = errors.New("protocol: no handshake message found")
)

// AppendHello appends the wire form of h to b.
func AppendHello(b []byte, h Hello) []byte {
	b = append(b, Magic[:]...)
	b = append(b, byte(h.Kind), h.Version)
	return binary.BigEndian.AppendUint64(b, h.Nonce)
}

// WriteHello writes h to w in one Write call.
func WriteHello(w io.Writer, h Hello) error {
	_, err := w.Write(AppendHello(make([]byte, 0, HelloSize), h))
	return err
}

// ParseHello decodes one handshake message of exactly [HelloSize] bytes.
func ParseHello(b []byte) (Hello, error) {
	if len(b) != HelloSize {
		return Hello{}, fmt.Errorf("%w: handshake message is %d bytes, want %d", ErrMalformed, len(b), HelloSize)
	}
	if [6]byte(b[:6]) != Magic {
		return Hello{}, ErrBadMagic
	}
	h := Hello{Kind: HelloKind(b[6]), Version: b[7], Nonce: binary.BigEndian.Uint64(b[8:])}
	if !h.Kind.valid() {
		return Hello{}, fmt.Errorf("%w: unknown handshake kind %#x", ErrMalformed, b[6])
	}
	return h, nil
}

// ReadHello reads exactly one handshake message from r, which must start with
// [Magic] ([ErrBadMagic] otherwise). Use it on transports where each
// connection is new (vsock, Unix sockets).
func ReadHello(r io.Reader) (Hello, error) {
	var b [HelloSize]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return Hello{}, err
	}
	return ParseHello(b[:])
}

// ScanHello reads r until it finds a valid handshake message and returns it
// with the number of bytes skipped before it. It reads one byte at a time
// while scanning, so it never consumes a byte past the message it returns:
// whatever follows (a yamux session) can be read from r afterwards. Use it on
// long-lived streams, where leftovers of an earlier session may precede a new
// client's hello. If maxSkip >= 0 and more than maxSkip bytes are skipped,
// ScanHello returns [ErrTooMuchJunk].
func ScanHello(r io.Reader, maxSkip int) (Hello, int, error) {
	var (
		win     [HelloSize]byte // candidate message, win[:n] filled
		n       int
		pending []byte // bytes taken from r that must be scanned again
		one     [1]byte
		skipped int
	)
	for {
		if maxSkip >= 0 && skipped > maxSkip {
			return Hello{}, skipped, ErrTooMuchJunk
		}
		var c byte
		if len(pending) > 0 {
			c, pending = pending[0], pending[1:]
		} else {
			if _, err := io.ReadFull(r, one[:]); err != nil {
				return Hello{}, skipped, err
			}
			c = one[0]
		}
		if n < len(Magic) && c != Magic[n] {
			// Mismatch: drop the first byte of the candidate and scan the
			// rest of it again.
			win[n] = c
			skipped++
			pending = append(append([]byte(nil), win[1:n+1]...), pending...)
			n = 0
			continue
		}
		win[n] = c
		n++
		if n < HelloSize {
			continue
		}
		h, err := ParseHello(win[:])
		if err != nil {
			skipped++
			pending = append(append([]byte(nil), win[1:]...), pending...)
			n = 0
			continue
		}
		return h, skipped, nil
	}
}

// SerialKeepAlive is how often each side pings a session on a serial
// stream (a virtio-serial port), where no connection close tells a side
// that the other went away. Connection transports use yamux's default.
const SerialKeepAlive = 5 * time.Second
