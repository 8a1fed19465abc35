//go:build linux

package agent_test

import (
	"os"
	"syscall"
	"testing"
)

func fileOwner(t *testing.T, path string) (uid, gid int) {
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return int(st.Uid), int(st.Gid)
}
