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
)

// writeFile receives a file as data frames and writes it atomically: to a
// temporary file in the same directory, fsync'd, chmod'ed and chown'ed, then
// renamed over the target, and the directory fsync'd.
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
	dir := filepath.Dir(path)
	if req.MkdirParents {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return 0, err
		}
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return 0, &fs.PathError{Op: "write", Path: path, Err: syscall.EISDIR}
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-")
	if err != nil {
		if pe, ok := err.(*fs.PathError); ok {
			// Report the target, not the temporary name pattern.
			pe.Path = path
		}
		return 0, err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
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
			return 0, &fs.PathError{Op: "write", Path: path, Err: unwrapPathErr(err)}
		}
		size += int64(len(p))
	}
	if err := f.Chmod(protocol.FileMode(req.Mode)); err != nil {
		return 0, &fs.PathError{Op: "chmod", Path: path, Err: unwrapPathErr(err)}
	}
	if req.UID != nil || req.GID != nil {
		uid, gid := -1, -1
		if req.UID != nil {
			uid = *req.UID
		}
		if req.GID != nil {
			gid = *req.GID
		}
		if err := f.Chown(uid, gid); err != nil {
			return 0, &fs.PathError{Op: "chown", Path: path, Err: unwrapPathErr(err)}
		}
	}
	if err := f.Sync(); err != nil {
		return 0, &fs.PathError{Op: "fsync", Path: path, Err: unwrapPathErr(err)}
	}
	if err := f.Close(); err != nil {
		return 0, &fs.PathError{Op: "close", Path: path, Err: unwrapPathErr(err)}
	}
	if err := os.Rename(tmp, path); err != nil {
		return 0, &fs.PathError{Op: "rename", Path: path, Err: unwrapLinkErr(err)}
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return size, nil
}

func unwrapPathErr(err error) error {
	if pe, ok := err.(*fs.PathError); ok {
		return pe.Err
	}
	return err
}

func unwrapLinkErr(err error) error {
	if le, ok := err.(*os.LinkError); ok {
		return le.Err
	}
	return err
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
