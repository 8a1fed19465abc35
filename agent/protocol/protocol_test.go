package protocol

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"strings"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	big := bytes.Repeat([]byte("x"), MaxFrameSize)
	frames := []struct {
		t FrameType
		p []byte
	}{
		{FrameRequest, []byte(`{"method":"ping"}`)},
		{FrameStdin, []byte("hello")},
		{FrameStdinEOF, nil},
		{FrameResize, EncodeResize(24, 80)},
		{FrameSignal, []byte("SIGTERM")},
		{FrameData, big},
	}
	for _, f := range frames {
		if err := WriteFrame(&buf, f.t, f.p); err != nil {
			t.Fatal(err)
		}
	}
	scratch := make([]byte, 64)
	for _, f := range frames {
		typ, p, err := ReadFrame(&buf, scratch)
		if err != nil {
			t.Fatalf("%v: %v", f.t, err)
		}
		if typ != f.t || !bytes.Equal(p, f.p) {
			t.Fatalf("got %v %d bytes, want %v %d bytes", typ, len(p), f.t, len(f.p))
		}
	}
	if _, _, err := ReadFrame(&buf, nil); err != io.EOF {
		t.Fatalf("at end: %v, want io.EOF", err)
	}
	rows, cols, err := DecodeResize(EncodeResize(50, 132))
	if err != nil || rows != 50 || cols != 132 {
		t.Fatalf("resize: %d %d %v", rows, cols, err)
	}
}

func TestReadFrameRejects(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"oversized", AppendFrameHeader(nil, FrameStdout, MaxFrameSize+1), ErrFrameTooLarge},
		{"huge", []byte{byte(FrameData), 0xff, 0xff, 0xff, 0xff}, ErrFrameTooLarge},
		{"unknown type", AppendFrameHeader(nil, 0x7f, 1), ErrUnknownFrame},
		{"type zero", AppendFrameHeader(nil, 0, 0), ErrUnknownFrame},
		{"eof with payload", append(AppendFrameHeader(nil, FrameStdinEOF, 1), 'x'), ErrMalformed},
		{"short resize", append(AppendFrameHeader(nil, FrameResize, 2), 1, 2), ErrMalformed},
		{"bad signal", append(AppendFrameHeader(nil, FrameSignal, 3), 'a', ';', 'b'), ErrMalformed},
		{"truncated header", []byte{1, 0}, ErrMalformed},
		{"truncated payload", append(AppendFrameHeader(nil, FrameStdout, 10), 'x'), ErrMalformed},
		{"empty request", AppendFrameHeader(nil, FrameRequest, 0), ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := ReadFrame(bytes.NewReader(tt.in), nil)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestHandshake(t *testing.T) {
	h := Hello{Kind: KindHello, Version: Version, Nonce: 0x0102030405060708}
	b := AppendHello(nil, h)
	if len(b) != HelloSize {
		t.Fatalf("len = %d", len(b))
	}
	got, err := ReadHello(bytes.NewReader(b))
	if err != nil || got != h {
		t.Fatalf("ReadHello = %+v, %v", got, err)
	}
	if _, err := ReadHello(strings.NewReader("GET / HTTP/1.1\r\n\r\n")); !errors.Is(err, ErrBadMagic) {
		t.Fatalf("bad magic: %v", err)
	}
	// Junk, a partial magic, a bad kind, then a real message, then more.
	junk := []byte("\x00\x01SMAG SMSMAGN")
	bad := AppendHello(nil, h)
	bad[6] = 'Z'
	in := append(append(append(junk, bad...), b...), "rest"...)
	r := bytes.NewReader(in)
	got, skipped, err := ScanHello(r, -1)
	if err != nil || got != h {
		t.Fatalf("ScanHello = %+v, %v", got, err)
	}
	if skipped != len(junk)+HelloSize {
		t.Fatalf("skipped %d, want %d", skipped, len(junk)+HelloSize)
	}
	rest, _ := io.ReadAll(r)
	if string(rest) != "rest" {
		t.Fatalf("ScanHello over-read: rest = %q", rest)
	}
	if _, _, err := ScanHello(strings.NewReader(strings.Repeat("x", 100)), 10); !errors.Is(err, ErrTooMuchJunk) {
		t.Fatalf("junk limit: %v", err)
	}
}

func TestDecodeRequest(t *testing.T) {
	good := []string{
		`{"method":"ping"}`,
		`{"method":"exec","exec":{"args":["true"]}}`,
		`{"method":"exec","exec":{"args":["sh","-c","x"],"env":["A=b"],"dir":"/tmp","user":"1:2","tty":true,"rows":24,"cols":80,"timeout_ns":5,"future_field":1}}`,
		`{"method":"write_file","file":{"path":"/a/b","mode":420,"uid":0,"gid":0,"mkdir_parents":true}}`,
		`{"method":"read_file","file":{"path":"/etc/hostname"}}`,
		`{"method":"set_time","time":{"unix_nano":1700000000000000000}}`,
		`{"method":"exec_stdin","exec_stdin":{"stream":3}}`,
	}
	for _, s := range good {
		if _, err := DecodeRequest([]byte(s)); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
	bad := map[string]error{
		`{"method":"frobnicate"}`:                                   ErrUnknownMethod,
		`{"method":"exec"}`:                                         ErrInvalid,
		`{"method":"exec","exec":{"args":[]}}`:                      ErrInvalid,
		`{"method":"exec","exec":{"args":["a\u0000b"]}}`:            ErrInvalid,
		`{"method":"exec","exec":{"args":["x"],"env":["=x"]}}`:      ErrInvalid,
		`{"method":"write_file","file":{"path":"relative"}}`:        ErrInvalid,
		`{"method":"write_file","file":{"path":"/x","mode":99999}}`: ErrInvalid,
		`{"method":"set_time","time":{"unix_nano":-1}}`:             ErrInvalid,
		`{"method":"exec_stdin"}`:                                   ErrInvalid,
		`not json`:                                                  ErrMalformed,
		`{"method":`:                                                ErrMalformed,
	}
	for s, want := range bad {
		if _, err := DecodeRequest([]byte(s)); !errors.Is(err, want) {
			t.Errorf("%s: err = %v, want %v", s, err, want)
		}
	}
}

func TestErrorFrom(t *testing.T) {
	_, err := os.Open("/nonexistent/file")
	e := ErrorFrom(err, "", "")
	if e.Code != CodeNotFound || e.Path != "/nonexistent/file" || e.Op != "open" {
		t.Fatalf("%+v", e)
	}
	if !errors.Is(e, fs.ErrNotExist) {
		t.Fatal("not ErrNotExist")
	}
	if got := e.Error(); got != "agent: open /nonexistent/file: no such file or directory" {
		t.Fatalf("Error() = %q", got)
	}
	b, _ := Marshal(e)
	if d := DecodeError(b); *d != *e {
		t.Fatalf("round trip: %+v", d)
	}
}
