//go:build linux

package server

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestLookupUser(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/passwd"), []byte(`# comment
root:x:0:0:root:/root:/bin/sh
app:x:1000:1000:App:/home/app:/bin/sh
broken line
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
`), 0o644)
	os.WriteFile(filepath.Join(root, "etc/group"), []byte(`root:x:0:
wheel:x:10:app,other
app:x:1000:
audio:x:29:app
nogroup:x:65534:
`), 0o644)
	tests := []struct {
		spec string
		want execUser
	}{
		{"", execUser{uid: 0, gid: 0, home: "/root"}},
		{"0", execUser{uid: 0, gid: 0, home: "/root"}},
		{"app", execUser{uid: 1000, gid: 1000, groups: []uint32{10, 29}, home: "/home/app"}},
		{"1000", execUser{uid: 1000, gid: 1000, groups: []uint32{10, 29}, home: "/home/app"}},
		{"app:wheel", execUser{uid: 1000, gid: 10, groups: []uint32{29}, home: "/home/app"}},
		{"app:7", execUser{uid: 1000, gid: 7, groups: []uint32{10, 29}, home: "/home/app"}},
		{"4242", execUser{uid: 4242, gid: 0, home: "/"}},
		{"4242:4343", execUser{uid: 4242, gid: 4343, home: "/"}},
		{"nobody:nogroup", execUser{uid: 65534, gid: 65534, home: "/nonexistent"}},
	}
	for _, tt := range tests {
		got, err := lookupUser(root, tt.spec)
		if err != nil {
			t.Errorf("%q: %v", tt.spec, err)
			continue
		}
		if !reflect.DeepEqual(*got, tt.want) {
			t.Errorf("%q: got %+v, want %+v", tt.spec, *got, tt.want)
		}
	}
	for _, spec := range []string{"ghost", "app:ghosts", ":0", "app:", "-1"} {
		if _, err := lookupUser(root, spec); err == nil {
			t.Errorf("%q: no error", spec)
		}
	}
	if _, err := lookupUser(root, "ghost"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ghost: %v", err)
	}
	// Without /etc/passwd, numeric ids still work.
	if u, err := lookupUser(t.TempDir(), "5:6"); err != nil || u.uid != 5 || u.gid != 6 {
		t.Errorf("no passwd: %+v %v", u, err)
	}
}

func TestMergeEnv(t *testing.T) {
	got := mergeEnv([]string{"PATH=/bin", "HOME=/root"}, []string{"A=1", "PATH=/x", "A=2"})
	want := []string{"PATH=/x", "HOME=/root", "A=2"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q", got)
	}
}
