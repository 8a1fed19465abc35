package protocol

// SignalNames are the signal names a [FrameSignal] may carry, indexed by
// their Linux signal numbers (1 to 31, the numbering of x86-64 and arm64;
// index 0 is empty). Real-time signals have no name here and cannot be
// sent; the names are exact (upper case, with the SIG prefix).
var SignalNames = [...]string{
	"",
	"SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE",
	"SIGKILL", "SIGUSR1", "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM", "SIGSTKFLT",
	"SIGCHLD", "SIGCONT", "SIGSTOP", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGURG", "SIGXCPU",
	"SIGXFSZ", "SIGVTALRM", "SIGPROF", "SIGWINCH", "SIGIO", "SIGPWR", "SIGSYS",
}

// SignalNumber returns the Linux number of a signal name of [SignalNames],
// or 0 if name is not one of them.
func SignalNumber(name string) int {
	if len(name) < 4 || len(name) > MaxSignalName || name[:3] != "SIG" {
		return 0
	}
	for n, s := range SignalNames {
		if n > 0 && s == name {
			return n
		}
	}
	return 0
}
