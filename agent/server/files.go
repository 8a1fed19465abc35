//go:build linux

package server

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/supermachine-go/supermachine-kernel/agent/protocol"
	"github.com/supermachine-go/supermachine-kernel/internal/atomicfile"
)

// writeFile receives a file as data frames and writes it atomically
// through atomicfile: to a temporary file in the same directory, given
// its owner and mode and fsync'd, then renamed over the target (a
// symbolic link there is replaced, not followed), and the directory
// fsync'd.
func (s *Server) writeFile(st *yamux.Stream, req *protocol.FileRequest) {
	size, err := s.receiveFile(st, req)
	if err != nil {
		sendError(st, protocol.ErrorFrom(err, "write", req.Path))
		if !errors.Is(err, errClientAbort) {
			// Drain what the client still sends until it sees the error,
			// so that it is not stuck on a full window.
			st.SetReadDeadline(time.Now().Add(10 * time.Second))
			io.Copy(io.Discard, st)
		}
		return
	}
	sendResponse(st, protocol.FileInfo{Size: size, Mode: req.Mode})
}

// errClientAbort is a write_file stream that ended before data-eof; the
// server reports it with code protocol.
var errClientAbort = fmt.Errorf("%w: client aborted the transfer", protocol.ErrMalformed)

func (s *Server) receiveFile(st *yamux.Stream, req *protocol.FileRequest) (size int64, err error) {
	path := filepath.Clean(req.Path)
	if req.MkdirParents {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return 0, err
		}
	}
	opts := atomicfile.Options{ReplaceSymlink: true}
	if req.UID != nil || req.GID != nil {
		opts.Owner = &atomicfile.Owner{UID: -1, GID: -1}
		if req.UID != nil {
			opts.Owner.UID = *req.UID
		}
		if req.GID != nil {
			opts.Owner.GID = *req.GID
		}
	}
	fail := func(err error) error { return &fs.PathError{Op: "write", Path: path, Err: err} }
	f, err := atomicfile.CreateWith(path, protocol.FileMode(req.Mode), opts)
	if err != nil {
		return 0, fail(err)
	}
	defer f.Cleanup()
	bp := getBuf()
	defer putBuf(bp)
	for {
		t, p, rerr := protocol.ReadFrame(st, *bp)
		if rerr != nil {
			if errors.Is(rerr, io.EOF) || errors.Is(rerr, yamux.ErrConnectionReset) || errors.Is(rerr, yamux.ErrSessionShutdown) {
				return 0, fmt.Errorf("%w before the end of the data", errClientAbort)
			}
			return 0, rerr
		}
		if t == protocol.FrameDataEOF {
			break
		}
		if t != protocol.FrameData {
			return 0, fmt.Errorf("%w: unexpected %v frame in file data", protocol.ErrMalformed, t)
		}
		if _, err := f.Write(p); err != nil {
			return 0, fail(err)
		}
		size += int64(len(p))
	}
	if err := f.Replace(); err != nil {
		return 0, fail(err)
	}
	return size, nil
}

// readFile sends a file: a response with its size and mode, then data
// frames and a data-EOF frame (or an error frame if reading fails).
func (s *Server) readFile(st *yamux.Stream, req *protocol.FileRequest) {
	path := filepath.Clean(req.Path)
	f, err := os.Open(path)
	if err != nil {
		sendError(st, protocol.ErrorFrom(err, "open", path))
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		sendError(st, protocol.ErrorFrom(err, "stat", path))
		return
	}
	if fi.IsDir() {
		sendError(st, protocol.ErrorFrom(&fs.PathError{Op: "read", Path: path, Err: syscall.EISDIR}, "", ""))
		return
	}
	if err := sendResponse(st, protocol.FileInfo{Size: fi.Size(), Mode: protocol.WireMode(fi.Mode())}); err != nil {
		return
	}
	bp := getBuf()
	defer putBuf(bp)
	buf := *bp
	for {
		n, err := f.Read(buf[protocol.HeaderSize:])
		if n > 0 {
			protocol.PutFrameHeader(buf, protocol.FrameData, n)
			if _, werr := st.Write(buf[:protocol.HeaderSize+n]); werr != nil {
				return
			}
		}
		if err == io.EOF {
			protocol.WriteFrame(st, protocol.FrameDataEOF, nil)
			return
		}
		if err != nil {
			sendError(st, protocol.ErrorFrom(err, "read", path))
			return
		}
	}
}
