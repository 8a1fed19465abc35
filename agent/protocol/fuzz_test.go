package protocol

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzReadFrame feeds arbitrary bytes to the frame decoder: it must never
// panic, never allocate past MaxFrameSize, and every frame it accepts must
// re-encode to the same bytes.
func FuzzReadFrame(f *testing.F) {
	f.Add(AppendFrameHeader(nil, FrameStdinEOF, 0))
	f.Add(append(AppendFrameHeader(nil, FrameStdout, 5), "hello"...))
	f.Add(append(AppendFrameHeader(nil, FrameResize, 4), EncodeResize(24, 80)...))
	f.Add(append(AppendFrameHeader(nil, FrameSignal, 7), "SIGTERM"...))
	f.Add(append(AppendFrameHeader(nil, FrameRequest, 17), `{"method":"ping"}`...))
	f.Add([]byte{byte(FrameData), 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0x7f, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		var out bytes.Buffer
		buf := make([]byte, 256)
		for {
			typ, p, err := ReadFrame(r, buf)
			if err != nil {
				if err != io.EOF && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrFrameTooLarge) && !errors.Is(err, ErrUnknownFrame) {
					t.Fatalf("unexpected error class: %v", err)
				}
				break
			}
			if len(p) > MaxFrameSize {
				t.Fatalf("payload of %d bytes", len(p))
			}
			if err := WriteFrame(&out, typ, p); err != nil {
				t.Fatalf("re-encode: %v", err)
			}
		}
		if consumed := len(in) - r.Len(); !bytes.HasPrefix(in[:consumed], out.Bytes()) {
			t.Fatalf("re-encoded frames differ from input")
		}
	})
}

// FuzzDecodeRequest feeds arbitrary bytes to the request decoder: no panics,
// and every accepted request re-encodes to a request that is accepted too.
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{
		`{"method":"ping"}`,
		`{"method":"exec","exec":{"args":["sh","-c","echo hi"],"env":["A=b"],"dir":"/","user":"nobody:nogroup","tty":true,"rows":24,"cols":80,"stdin":true,"stdout":true,"stderr":true,"timeout_ns":1000000000}}`,
		`{"method":"write_file","file":{"path":"/tmp/x","mode":493,"uid":0,"gid":0,"mkdir_parents":true}}`,
		`{"method":"read_file","file":{"path":"/etc/passwd"}}`,
		`{"method":"set_time","time":{"unix_nano":1700000000000000000}}`,
		`{"method":"exec","exec":{"args":[]}}`,
		`[]`, `null`, `{"method":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		req, err := DecodeRequest(in)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnknownMethod) && !errors.Is(err, ErrInvalid) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		b, err := Marshal(req)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if _, err := DecodeRequest(b); err != nil {
			t.Fatalf("re-encoded request %s rejected: %v", b, err)
		}
	})
}

// FuzzScanHello feeds arbitrary bytes to the handshake scanner, which reads a
// long-lived stream: no panics, and it never reads past the message it finds.
func FuzzScanHello(f *testing.F) {
	h := AppendHello(nil, Hello{Kind: KindHello, Version: Version, Nonce: 42})
	f.Add(h)
	f.Add(append([]byte("junkSMAGN"), h...))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		got, skipped, err := ScanHello(r, -1)
		if err != nil {
			return
		}
		end := len(in) - r.Len()
		if end != skipped+HelloSize {
			t.Fatalf("consumed %d bytes, skipped %d", end, skipped)
		}
		if !bytes.Equal(in[skipped:end], AppendHello(nil, got)) {
			t.Fatalf("returned message differs from input")
		}
	})
}
