package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/hashicorp/yamux"
	"github.com/supermachine-go/supermachine-kernel/agent/protocol"
)

// fileChunk is the largest data frame payload the client sends.
const fileChunk = 256 << 10

// WriteFileOptions are the optional settings of [Client.WriteFile].
type WriteFileOptions struct {
	// MkdirAll creates missing parent directories (mode 0755).
	MkdirAll bool
	// Chown sets the owner of the file to UID and GID; otherwise the
	// agent's user (root) owns it.
	Chown    bool
	UID, GID int
}

// WriteFile streams r to the file path in the guest and replaces the file
// atomically: the agent writes a temporary file in the same directory,
// sets its owner and then its mode (permission, setuid, setgid and sticky
// bits of mode; the umask does not apply), syncs it, and renames it over
// path (a symbolic link at path is replaced, not followed). If r fails or
// ctx ends first, the file is left untouched. Errors from the guest are
// *Error values naming the path.
func (c *Client) WriteFile(ctx context.Context, path string, r io.Reader, mode fs.FileMode, opts *WriteFileOptions) error {
	if opts == nil {
		opts = &WriteFileOptions{}
	}
	fr := &protocol.FileRequest{Path: path, Mode: protocol.WireMode(mode), MkdirParents: opts.MkdirAll}
	if opts.Chown {
		uid, gid := opts.UID, opts.GID
		fr.UID, fr.GID = &uid, &gid
	}
	req := &protocol.Request{Method: protocol.MethodWriteFile, File: fr}
	if err := req.Validate(); err != nil {
		return err
	}
	st, stop, err := c.openStream(ctx, req)
	if err != nil {
		return err
	}
	defer st.Close()
	defer stop()

	// Read the answer concurrently: the agent may refuse early (say, a
	// missing directory), and then sending the rest is pointless.
	answer := make(chan error, 1)
	go func() {
		var info protocol.FileInfo
		answer <- readResponse(st, &info)
	}()
	sendErr := make(chan error, 1)
	go func() { sendErr <- sendData(st, r) }()
	select {
	case err := <-answer:
		// An early answer is an error (a success comes only after EOF).
		st.SetWriteDeadline(deadlinePast)
		<-sendErr
		if err == nil {
			err = fmt.Errorf("%w: write_file answered before the data ended", protocol.ErrMalformed)
		}
		return c.fileErr(ctx, err)
	case err := <-sendErr:
		if err != nil {
			// Abort: closing the stream without a data-EOF frame makes the
			// agent drop the temporary file.
			st.Close()
			return ctxErr(ctx, c.connErr(err))
		}
	}
	return c.fileErr(ctx, <-answer)
}

func (c *Client) fileErr(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	var ae *Error
	if errors.As(err, &ae) {
		return err
	}
	return ctxErr(ctx, c.connErr(err))
}

// sendData sends r as data frames and a data-EOF frame.
func sendData(st *yamux.Stream, r io.Reader) error {
	buf := make([]byte, protocol.HeaderSize+fileChunk)
	for {
		n, err := io.ReadFull(r, buf[protocol.HeaderSize:])
		if n > 0 {
			protocol.PutFrameHeader(buf, protocol.FrameData, n)
			if _, werr := st.Write(buf[:protocol.HeaderSize+n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return protocol.WriteFrame(st, protocol.FrameDataEOF, nil)
		}
		if err != nil {
			return err
		}
	}
}

// ReadFile reads the whole file path from the guest.
func (c *Client) ReadFile(ctx context.Context, path string) ([]byte, error) {
	f, err := c.OpenFile(ctx, path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var b bytes.Buffer
	if f.Size() > 0 && f.Size() < 1<<30 {
		b.Grow(int(f.Size()))
	}
	_, err = b.ReadFrom(f)
	return b.Bytes(), err
}

// FileReader streams a file from the guest; see [Client.OpenFile].
type FileReader struct {
	c     *Client
	ctx   context.Context
	st    *yamux.Stream
	stop  func() bool
	info  protocol.FileInfo
	buf   []byte // unread part of the current data frame
	frame []byte
	err   error
}

// OpenFile opens the file path in the guest for streamed reading. The agent
// sends the file as fast as the reader consumes it; close the reader when
// done.
func (c *Client) OpenFile(ctx context.Context, path string) (*FileReader, error) {
	req := &protocol.Request{Method: protocol.MethodReadFile, File: &protocol.FileRequest{Path: path}}
	if err := req.Validate(); err != nil {
		return nil, err
	}
	st, stop, err := c.openStream(ctx, req)
	if err != nil {
		return nil, err
	}
	f := &FileReader{c: c, ctx: ctx, st: st, stop: stop}
	if err := readResponse(st, &f.info); err != nil {
		stop()
		st.Close()
		return nil, c.fileErr(ctx, err)
	}
	return f, nil
}

// Size returns the size of the file when it was opened.
func (f *FileReader) Size() int64 { return f.info.Size }

// Mode returns the permission bits (and setuid, setgid, sticky) of the file.
func (f *FileReader) Mode() fs.FileMode { return protocol.FileMode(f.info.Mode) }

// Read reads file data.
func (f *FileReader) Read(p []byte) (int, error) {
	for len(f.buf) == 0 {
		if f.err != nil {
			return 0, f.err
		}
		if f.frame == nil {
			f.frame = make([]byte, protocol.MaxFrameSize)
		}
		t, b, err := protocol.ReadFrame(f.st, f.frame)
		switch {
		case err != nil:
			f.err = f.c.fileErr(f.ctx, err)
		case t == protocol.FrameData:
			f.buf = b
		case t == protocol.FrameDataEOF:
			f.err = io.EOF
		case t == protocol.FrameError:
			f.err = protocol.DecodeError(b)
		default:
			f.err = fmt.Errorf("%w: unexpected %v frame in file data", protocol.ErrMalformed, t)
		}
	}
	n := copy(p, f.buf)
	f.buf = f.buf[n:]
	return n, nil
}

// Close ends the transfer.
func (f *FileReader) Close() error {
	f.stop()
	return f.st.Close()
}
