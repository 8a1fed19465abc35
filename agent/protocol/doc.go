// Package protocol defines the wire protocol spoken between the supermachine
// agent (the guest) and its host client.
//
// A connection is any reliable byte stream: an AF_VSOCK connection, a Unix
// socket, or a virtio-serial port. It starts with a versioned handshake of
// fixed 16-byte [Hello] messages (see [WriteHello] and [ReadHello]); after the
// handshake the stream carries a [yamux] session, the client side opening one
// yamux stream per RPC. On each RPC stream both peers exchange typed,
// length-prefixed frames ([ReadFrame], [WriteFrame]): the client first sends a
// [FrameRequest] holding a JSON [Request], then both sides send data and
// control frames until the server closes the stream.
//
// Every length is checked against [MaxFrameSize] before anything is
// allocated, unknown frame types and malformed messages are errors
// ([ErrFrameTooLarge], [ErrUnknownFrame], [ErrMalformed]), and an error in one
// RPC stream never affects other streams of the same connection.
//
// agent/PROTOCOL.md describes the same protocol in prose, for implementers in
// other languages.
//
// [yamux]: https://github.com/hashicorp/yamux/blob/master/spec.md
package protocol
