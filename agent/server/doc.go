// Package server is the guest side of the supermachine agent: it accepts
// connections (or a single long-lived stream such as a virtio-serial port),
// runs the versioned handshake and a yamux session on each, and serves every
// RPC stream of the session: exec, file reads and writes, and control calls.
// The wire protocol is in package protocol and agent/PROTOCOL.md.
//
// A Server is transport-agnostic and testable in-process:
//
//	srv := server.New(server.Config{Version: agent.Version})
//	l, _ := net.Listen("unix", sock)
//	go srv.Serve(l)
//
// In the guest, [ListenVsock] gives the AF_VSOCK listener (host-only by
// default) and [OpenSerialPort] the virtio-serial port, served with
// [Server.ServeStream], which survives host clients that go away and come
// back.
//
// Processes are started with syscall.ForkExec and waited for either
// directly (the default) or through a [Starter] such as the PID-1 reaper of
// package pid1, so that reaping orphans never steals an exec's status.
package server
