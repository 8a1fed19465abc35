// Package initconfig is the settings of the guest's init, shared by the
// host, which writes them (package initramfs), and the agent, which reads
// them as PID 1 of the initramfs. Settings are typed data: a JSON file in
// the initramfs, an optional second one in an extra initramfs segment
// appended per boot, and supermachine.* kernel command line parameters,
// each parsed as one word. Nothing here ever reaches a shell.
//
// A settings file has one setting a line: a name, then its values as Go
// double-quoted strings (strconv.Quote), so that any byte can be carried:
//
//	root "/dev/vdb"
//	mount "/lower/home/a b" "/home/a b" "bind" "ro"
//	agent_arg "-debug"
//
// Blank lines and lines starting with # are ignored. The format is read
// without reflection: the agent reads it before it serves, where every
// first use of code costs under emulation.
//
// The package is portable: it holds no mounting, so that the host can
// validate settings at build time on any GOOS.
package initconfig

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Paths of the settings files inside the initramfs (without a leading
// slash, as a cpio archive names them). ArchiveFile comes with the
// archive the initramfs package builds; BootFile, if present, comes from a
// segment appended for one boot and is applied after it.
const (
	Dir         = "supermachine"
	ArchiveFile = Dir + "/init.conf"
	BootFile    = Dir + "/boot.conf"
)

// CmdlinePrefix starts every parameter of the init and the agent on the
// kernel command line.
const CmdlinePrefix = "supermachine."

// Mount is an extra filesystem mounted in the new root before the agent
// serves.
type Mount struct {
	Source  string // device, share tag, or for bind a path in the initramfs (/lower/DIR)
	Target  string // absolute path in the new root
	FSType  string // ext4, virtiofs, tmpfs, …; bind for a bind mount
	Options string // mount(8) -o options
}

// Config is the init's settings. The zero value of a field means "not
// set": [Config.Merge] keeps the earlier value then, and [Defaults] fills
// in the rest.
type Config struct {
	Root        string   // root device, or the share's tag for virtiofs and 9p
	RootFSType  string   // squashfs, ext4, virtiofs, 9p
	RootOptions string   // mount(8) -o options of the root, e.g. a 9p msize
	OverlaySize string   // tmpfs size= of the upper layer
	Upper       string   // writable block device for the upper layer
	UpperFSType string   // its filesystem
	RootWait    int      // seconds to wait for each device
	Mounts      []Mount  // extra mounts, in order
	AgentArgs   []string // flags for the agent
	Rescue      bool     // a busybox shell on the console when the init fails
}

// Defaults are the settings of an initramfs built with no options.
func Defaults() Config {
	return Config{Root: "/dev/vda", RootFSType: "squashfs", OverlaySize: "50%", UpperFSType: "ext4", RootWait: 5}
}

// ErrBadSetting is wrapped by every error about a setting's value.
var ErrBadSetting = errors.New("bad setting")

// Merge applies the set fields of o over c; mounts and agent arguments
// are appended.
func (c *Config) Merge(o Config) {
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&c.Root, o.Root)
	set(&c.RootFSType, o.RootFSType)
	set(&c.RootOptions, o.RootOptions)
	set(&c.OverlaySize, o.OverlaySize)
	set(&c.Upper, o.Upper)
	set(&c.UpperFSType, o.UpperFSType)
	if o.RootWait != 0 {
		c.RootWait = o.RootWait
	}
	c.Mounts = append(c.Mounts, o.Mounts...)
	c.AgentArgs = append(c.AgentArgs, o.AgentArgs...)
	c.Rescue = c.Rescue || o.Rescue
}

// Validate checks every set field; name says where the settings came
// from, for the error.
func (c Config) Validate() error {
	switch c.RootFSType {
	case "", "squashfs", "ext4", "ext2", "ext3", "erofs", "virtiofs", "9p":
	default:
		return fmt.Errorf("%w: root filesystem type %q (squashfs, ext4, virtiofs or 9p)", ErrBadSetting, c.RootFSType)
	}
	if c.OverlaySize != "" {
		if err := CheckSize(c.OverlaySize); err != nil {
			return fmt.Errorf("overlay size: %w", err)
		}
	}
	if c.RootWait < 0 {
		return fmt.Errorf("%w: rootwait %d is negative", ErrBadSetting, c.RootWait)
	}
	for _, m := range c.Mounts {
		if err := m.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// Validate checks that m has a source, an absolute target and a type.
func (m Mount) Validate() error {
	switch {
	case m.Source == "":
		return fmt.Errorf("%w: mount on %q has no source", ErrBadSetting, m.Target)
	case m.Target == "":
		return fmt.Errorf("%w: mount of %q has no target", ErrBadSetting, m.Source)
	case !strings.HasPrefix(m.Target, "/"):
		return fmt.Errorf("%w: mount target %q is not an absolute path", ErrBadSetting, m.Target)
	case slices.Contains(strings.Split(m.Target, "/"), ".."):
		return fmt.Errorf("%w: mount target %q leaves the new root (..)", ErrBadSetting, m.Target)
	case m.FSType == "":
		return fmt.Errorf("%w: mount of %q on %q has no filesystem type", ErrBadSetting, m.Source, m.Target)
	case strings.ContainsRune(m.Source+m.Target+m.FSType+m.Options, 0):
		return fmt.Errorf("%w: mount of %q on %q contains a NUL byte", ErrBadSetting, m.Source, m.Target)
	}
	return nil
}

// CheckSize accepts a tmpfs size= value: a number of bytes with an
// optional k, m, g, t, p or e suffix, or a percentage of RAM.
func CheckSize(s string) error {
	num := strings.TrimRight(s, "kKmMgGtTpPeE%")
	suffix := s[len(num):]
	if _, err := strconv.ParseUint(num, 10, 64); err != nil || len(suffix) > 1 {
		return fmt.Errorf("%w: size %q (want a number with an optional k, m, g suffix, or a percentage such as 50%%)", ErrBadSetting, s)
	}
	return nil
}

// ParseMount parses SOURCE:TARGET:FSTYPE[:OPTIONS], the syntax of
// supermachine.mount and of the CLI's -mount flag. OPTIONS may contain
// colons; the other three fields cannot.
func ParseMount(spec string) (Mount, error) {
	p := strings.SplitN(spec, ":", 4)
	if len(p) < 3 {
		return Mount{}, fmt.Errorf("%w: mount %q: want SOURCE:TARGET:FSTYPE[:OPTIONS]", ErrBadSetting, spec)
	}
	m := Mount{Source: p[0], Target: p[1], FSType: p[2]}
	if len(p) == 4 {
		m.Options = p[3]
	}
	if err := m.Validate(); err != nil {
		return Mount{}, fmt.Errorf("mount %q: %w", spec, err)
	}
	return m, nil
}

// Decode parses a settings file, refusing unknown settings.
func Decode(b []byte) (Config, error) {
	var c Config
	for n, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest, _ := strings.Cut(line, " ")
		vals, err := unquoteAll(rest)
		if err == nil {
			err = c.set(name, vals)
		}
		if err == nil {
			err = c.Validate()
		}
		if err != nil {
			return Config{}, fmt.Errorf("line %d: %w", n+1, err)
		}
	}
	return c, nil
}

// set applies one line of a settings file.
func (c *Config) set(name string, vals []string) error {
	want := 1
	if name == "mount" {
		want = 4
	}
	if len(vals) != want {
		return fmt.Errorf("%w: %s takes %d quoted values, not %d", ErrBadSetting, name, want, len(vals))
	}
	v := vals[0]
	switch name {
	case "root":
		c.Root = v
	case "rootfstype":
		c.RootFSType = v
	case "rootoptions":
		c.RootOptions = v
	case "overlay_size":
		c.OverlaySize = v
	case "upper":
		c.Upper = v
	case "upperfstype":
		c.UpperFSType = v
	case "rootwait":
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("%w: rootwait %q is not a number of seconds", ErrBadSetting, v)
		}
		c.RootWait = n
	case "mount":
		c.Mounts = append(c.Mounts, Mount{Source: vals[0], Target: vals[1], FSType: vals[2], Options: vals[3]})
	case "agent_arg":
		c.AgentArgs = append(c.AgentArgs, v)
	case "rescue":
		b, err := ParseBool(v)
		if err != nil {
			return err
		}
		c.Rescue = b
	default:
		return fmt.Errorf("%w: unknown setting %q", ErrBadSetting, name)
	}
	return nil
}

// unquoteAll parses blank-separated Go double-quoted strings.
func unquoteAll(s string) ([]string, error) {
	var out []string
	for s = strings.TrimLeft(s, " \t"); s != ""; s = strings.TrimLeft(s, " \t") {
		q, err := strconv.QuotedPrefix(s)
		if err != nil || q[0] != '"' {
			return nil, fmt.Errorf("%w: want a double-quoted string at %q", ErrBadSetting, s)
		}
		v, err := strconv.Unquote(q)
		if err != nil {
			return nil, fmt.Errorf("%w: %q: %v", ErrBadSetting, q, err)
		}
		out = append(out, v)
		s = s[len(q):]
	}
	return out, nil
}

// Encode returns the settings file for c: only the set fields, in a
// fixed order.
func Encode(c Config) ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	var b strings.Builder
	line := func(name string, vals ...string) {
		b.WriteString(name)
		for _, v := range vals {
			b.WriteByte(' ')
			b.WriteString(strconv.Quote(v))
		}
		b.WriteByte('\n')
	}
	for _, f := range []struct{ name, v string }{
		{"root", c.Root}, {"rootfstype", c.RootFSType}, {"rootoptions", c.RootOptions}, {"overlay_size", c.OverlaySize},
		{"upper", c.Upper}, {"upperfstype", c.UpperFSType},
	} {
		if f.v != "" {
			line(f.name, f.v)
		}
	}
	if c.RootWait != 0 {
		line("rootwait", strconv.Itoa(c.RootWait))
	}
	for _, m := range c.Mounts {
		line("mount", m.Source, m.Target, m.FSType, m.Options)
	}
	for _, a := range c.AgentArgs {
		line("agent_arg", a)
	}
	if c.Rescue {
		line("rescue", "1")
	}
	return []byte(b.String()), nil
}

// InitParams are the init's parameter names on the kernel command line,
// after [CmdlinePrefix]. The agent reads the others (see its README).
var InitParams = []string{"root", "rootfstype", "rootoptions", "overlay_size", "upper", "upperfstype", "rootwait", "mount", "rescue"}

// A CmdlineError is a malformed init parameter on the kernel command
// line; it names the parameter.
type CmdlineError struct {
	Param string // the whole word, e.g. supermachine.mount=a:b
	Err   error
}

func (e *CmdlineError) Error() string {
	return fmt.Sprintf("kernel command line parameter %s: %v", e.Param, e.Err)
}

func (e *CmdlineError) Unwrap() error { return e.Err }

// FromCmdline returns the init settings the supermachine.* parameters of
// params set (other parameters are skipped; the agent reports unknown
// ones). A malformed value is a [*CmdlineError].
func FromCmdline(params []Param) (Config, error) {
	var c Config
	for _, p := range params {
		name, ok := strings.CutPrefix(p.Key, CmdlinePrefix)
		if !ok {
			continue
		}
		bad := func(err error) error {
			return &CmdlineError{Param: p.Key + "=" + p.Value, Err: err}
		}
		switch name {
		case "root", "rootfstype", "rootoptions", "overlay_size", "upper", "upperfstype":
			if p.Value == "" {
				return Config{}, bad(fmt.Errorf("%w: empty value", ErrBadSetting))
			}
			var one Config
			switch name {
			case "root":
				one.Root = p.Value
			case "rootfstype":
				one.RootFSType = p.Value
			case "rootoptions":
				one.RootOptions = p.Value
			case "overlay_size":
				one.OverlaySize = p.Value
			case "upper":
				one.Upper = p.Value
			case "upperfstype":
				one.UpperFSType = p.Value
			}
			if err := one.Validate(); err != nil {
				return Config{}, bad(err)
			}
			c.Merge(one)
		case "rootwait":
			n, err := strconv.Atoi(p.Value)
			if err != nil || n <= 0 {
				return Config{}, bad(fmt.Errorf("%w: want a whole number of seconds above 0", ErrBadSetting))
			}
			c.RootWait = n
		case "mount":
			m, err := ParseMount(p.Value)
			if err != nil {
				return Config{}, bad(err)
			}
			c.Mounts = append(c.Mounts, m)
		case "rescue":
			b, err := ParseBool(p.Value)
			if err != nil {
				return Config{}, bad(err)
			}
			c.Rescue = b
		}
	}
	return c, nil
}

// ParseBool accepts a bare parameter (""), 1/0, y/n, yes/no, true/false,
// on/off.
func ParseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "", "1", "y", "yes", "true", "on":
		return true, nil
	case "0", "n", "no", "false", "off":
		return false, nil
	}
	return false, fmt.Errorf("%w: %q is not a boolean (1 or 0)", ErrBadSetting, s)
}

// Param is one word of the kernel command line: Key=Value, or Key alone
// (Value "").
type Param struct{ Key, Value string }

// SplitCmdline splits a kernel command line (the content of /proc/cmdline)
// into its parameters, in order, the way the kernel does: words are
// separated by blanks, a double-quoted part may contain blanks
// (`a="b c"` gives a = "b c"), and a word without '=' has the value "".
// Everything after a lone "--" belongs to init and is not returned.
func SplitCmdline(cmdline string) []Param {
	var params []Param
	s := cmdline
	for {
		s = strings.TrimLeft(s, " \t\n")
		if s == "" {
			return params
		}
		// The end of the word: the first blank outside quotes.
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
		params = append(params, Param{key, val})
	}
}
