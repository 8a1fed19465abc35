package pid1

import "strings"

// ParseCmdline splits a kernel command line (the content of /proc/cmdline)
// into parameters the way the kernel does: words are separated by spaces,
// a double-quoted part may contain spaces (`a="b c"` gives a = "b c"), and a
// word without '=' maps to "". Everything after a lone "--" belongs to init
// and is not returned. Later parameters win over earlier ones.
func ParseCmdline(cmdline string) map[string]string {
	params := make(map[string]string)
	s := cmdline
	for {
		s = strings.TrimLeft(s, " \t\n")
		if s == "" {
			return params
		}
		// Find the end of the word: the first blank outside quotes.
		inQuote := false
		end := len(s)
		for i := 0; i < len(s); i++ {
			if s[i] == '"' {
				inQuote = !inQuote
			} else if !inQuote && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n') {
				end = i
				break
			}
		}
		word := s[:end]
		s = s[end:]
		if word == "--" {
			return params
		}
		key, val, _ := strings.Cut(word, "=")
		key = strings.ReplaceAll(key, `"`, "")
		// The kernel strips one pair of quotes around the value.
		if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
			val = val[1 : len(val)-1]
		} else {
			val = strings.ReplaceAll(val, `"`, "")
		}
		params[key] = val
	}
}
