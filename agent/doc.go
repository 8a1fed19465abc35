// Package agent is the host-side client of the supermachine guest agent, the
// PID-1 process that runs inside a microVM's container and serves
// docker-exec-style commands, file transfers and control calls.
//
// The client reads like os/exec:
//
//	c, err := agent.Dial(ctx, "unix", "/run/vm/agent.sock")
//	if err != nil { ... }
//	defer c.Close()
//	out, err := c.Command(ctx, "uname", "-a").Output()
//
// # Connecting
//
// One protocol runs over any reliable byte stream, so there is one dialer
// per way of reaching a guest:
//
//   - [DialVsock]: native AF_VSOCK (QEMU vhost-vsock) to a guest CID and port.
//   - [DialHybridVsock]: the hybrid-vsock Unix socket of Firecracker and
//     Cloud Hypervisor ("CONNECT <port>\n", answered by "OK <hostport>\n"),
//     retried with backoff while the guest boots.
//   - [Dial]: a plain Unix socket (an agent started with -listen-unix, or
//     any proxy).
//   - [NewClient]: any io.ReadWriteCloser, such as the chardev Unix socket
//     behind the agent's virtio-serial port. The agent serves such a serial
//     stream for ever: when one client goes away the next can connect.
//
// The agent listens on vsock port [DefaultVsockPort] (1024) and on the
// virtio-serial port named [DefaultSerialPort] ("supermachine.agent").
//
// # Commands
//
// [Client.Command] returns a [Cmd] with the fields of exec.Cmd (Path, Args,
// Env, Dir, Stdin, Stdout, Stderr, Cancel, WaitDelay) plus User, TTY with
// Rows and Cols, Timeout and OutputGrace; Run, Start, Wait, Output,
// CombinedOutput, StdinPipe, StdoutPipe and StderrPipe behave as in
// os/exec, failures included (pipes closed by a failed Start, Stdin read
// errors and output write errors returned by Wait, io.ErrShortWrite, the
// *ExitError of a command killed because its context ended,
// [ErrWaitDelay]). Each output stream buffers [PipeSize] bytes, as an OS
// pipe. Signal and Resize act on the running process at once, even while
// it leaves its input unread (stdin travels on a stream of its own). A
// command that fails returns an *[ExitError] (test
// with errors.As) whose [ProcessState] has the exit code, the killing
// signal, the duration and the peak RSS; a command killed at its Timeout
// also matches [ErrTimedOut]. Errors the agent reports before a process
// starts (program not found, bad directory, unknown user) are *[Error]
// values that match fs.ErrNotExist, fs.ErrPermission and so on.
//
// Every command and call runs on its own multiplexed stream with its own
// flow control: a command whose output nobody reads stalls alone. Closing
// the Client, or the end of a command's context, kills the command's
// process group in the guest.
//
// # Files and control
//
// [Client.WriteFile] streams a file into the guest and replaces the target
// atomically; [Client.ReadFile] and [Client.OpenFile] stream one out.
// [Client.Ping], [Client.Version], [Client.Info], [Client.Sync],
// [Client.SetTime], [Client.PowerOff] and [Client.Reboot] complete the API.
//
// The guest side lives in the server, pid1 and cmd/supermachine-agent
// packages below this one; the wire protocol is in package protocol and
// written down in PROTOCOL.md.
package agent
