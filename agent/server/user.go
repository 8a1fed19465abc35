//go:build linux

package server

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// execUser is a resolved exec user.
type execUser struct {
	uid, gid uint32
	groups   []uint32
	home     string
}

// passwdEntry is a line of /etc/passwd.
type passwdEntry struct {
	name     string
	uid, gid uint32
	home     string
}

// groupEntry is a line of /etc/group.
type groupEntry struct {
	name    string
	gid     uint32
	members []string
}

var errNoUser = errors.New("no matching entries in passwd file")

// lookupUser resolves an exec user spec ("", "uid", "uid:gid", "name",
// "name:group", or mixes) against root/etc/passwd and root/etc/group, like
// docker exec -u: a numeric uid need not exist in passwd (the group is then
// 0 and the home "/"); names must exist. The supplementary groups are the
// groups of /etc/group that list the user's name.
func lookupUser(root, spec string) (*execUser, error) {
	userPart, groupPart, hasGroup := strings.Cut(spec, ":")
	if userPart == "" && spec != "" {
		return nil, fmt.Errorf("invalid user %q", spec)
	}
	if userPart == "" {
		userPart = "0"
	}
	users, uerr := readPasswd(filepath.Join(root, "etc/passwd"))
	u := &execUser{home: "/"}
	var name string
	if id, err := parseID(userPart); err == nil {
		u.uid = id
		found := false
		for _, e := range users {
			if e.uid == id {
				u.gid, u.home, name, found = e.gid, e.home, e.name, true
				break
			}
		}
		if !found && id == 0 {
			u.home = "/root"
		}
	} else {
		found := false
		for _, e := range users {
			if e.name == userPart {
				u.uid, u.gid, u.home, name, found = e.uid, e.gid, e.home, e.name, true
				break
			}
		}
		if !found {
			if uerr != nil {
				return nil, fmt.Errorf("unable to find user %s: %w", userPart, uerr)
			}
			return nil, &fs.PathError{Op: "lookup user", Path: userPart, Err: fmt.Errorf("%w: %w", errNoUser, fs.ErrNotExist)}
		}
	}
	groups, gerr := readGroup(filepath.Join(root, "etc/group"))
	if hasGroup {
		if groupPart == "" {
			return nil, fmt.Errorf("invalid user %q: empty group", spec)
		}
		if id, err := parseID(groupPart); err == nil {
			u.gid = id
		} else {
			found := false
			for _, g := range groups {
				if g.name == groupPart {
					u.gid, found = g.gid, true
					break
				}
			}
			if !found {
				if gerr != nil {
					return nil, fmt.Errorf("unable to find group %s: %w", groupPart, gerr)
				}
				return nil, &fs.PathError{Op: "lookup group", Path: groupPart, Err: fmt.Errorf("no matching entries in group file: %w", fs.ErrNotExist)}
			}
		}
	}
	if name != "" {
		for _, g := range groups {
			for _, m := range g.members {
				if m == name && g.gid != u.gid {
					u.groups = append(u.groups, g.gid)
				}
			}
		}
	}
	if u.home == "" {
		u.home = "/"
	}
	return u, nil
}

func parseID(s string) (uint32, error) {
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil || v == 1<<32-1 {
		return 0, fmt.Errorf("invalid id %q", s)
	}
	return uint32(v), nil
}

// colonCache keeps the parsed passwd and group files, keyed by path and
// checked against the file's inode, size and modification time on every
// use: an exec then costs a stat instead of reading and parsing two files.
var colonCache struct {
	sync.Mutex
	m map[string]cachedFile
}

type cachedFile struct {
	ino, size int64
	mtime     time.Time
	v         any
}

// cachedParse returns parse(path), reusing the last result while the file
// is unchanged.
func cachedParse[T any](path string, parse func(string) (T, error)) (T, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return parse(path) // reports the error as parse does
	}
	var ino int64
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		ino = int64(st.Ino)
	}
	colonCache.Lock()
	c, ok := colonCache.m[path]
	colonCache.Unlock()
	if ok && c.ino == ino && c.size == fi.Size() && c.mtime.Equal(fi.ModTime()) {
		return c.v.(T), nil
	}
	v, err := parse(path)
	if err != nil {
		return v, err
	}
	colonCache.Lock()
	if colonCache.m == nil {
		colonCache.m = make(map[string]cachedFile)
	}
	colonCache.m[path] = cachedFile{ino: ino, size: fi.Size(), mtime: fi.ModTime(), v: v}
	colonCache.Unlock()
	return v, nil
}

func readPasswd(path string) ([]passwdEntry, error) {
	return cachedParse(path, parsePasswd)
}

func readGroup(path string) ([]groupEntry, error) {
	return cachedParse(path, parseGroup)
}

func parsePasswd(path string) ([]passwdEntry, error) {
	var out []passwdEntry
	err := readColonFile(path, func(f []string) {
		if len(f) < 7 {
			return
		}
		uid, err1 := parseID(f[2])
		gid, err2 := parseID(f[3])
		if err1 != nil || err2 != nil || f[0] == "" {
			return
		}
		out = append(out, passwdEntry{name: f[0], uid: uid, gid: gid, home: f[5]})
	})
	return out, err
}

func parseGroup(path string) ([]groupEntry, error) {
	var out []groupEntry
	err := readColonFile(path, func(f []string) {
		if len(f) < 4 {
			return
		}
		gid, err := parseID(f[2])
		if err != nil || f[0] == "" {
			return
		}
		var members []string
		for _, m := range strings.Split(f[3], ",") {
			if m = strings.TrimSpace(m); m != "" {
				members = append(members, m)
			}
		}
		out = append(out, groupEntry{name: f[0], gid: gid, members: members})
	})
	return out, err
}

// readColonFile calls fn with the colon-separated fields of each line of a
// passwd-style file, skipping blank lines and comments.
func readColonFile(path string, fn func([]string)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 0, 4096), 1<<20)
	for s.Scan() {
		line := strings.TrimSpace(s.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		fn(strings.Split(line, ":"))
	}
	return s.Err()
}
