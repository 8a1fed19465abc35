package pid1

import "github.com/supermachine-go/supermachine-kernel/internal/initconfig"

// ParseCmdline splits a kernel command line (the content of /proc/cmdline)
// into parameters the way the kernel does: words are separated by spaces,
// a double-quoted part may contain spaces (`a="b c"` gives a = "b c"), and a
// word without '=' maps to "". Everything after a lone "--" belongs to init
// and is not returned. Later parameters win over earlier ones.
func ParseCmdline(cmdline string) map[string]string {
	params := make(map[string]string)
	for _, p := range initconfig.SplitCmdline(cmdline) {
		params[p.Key] = p.Value
	}
	return params
}
