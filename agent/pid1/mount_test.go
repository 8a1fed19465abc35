//go:build linux

package pid1

import "testing"

func TestUnescapeMountinfo(t *testing.T) {
	if got := unescapeMountinfo(`/mnt/a\040b\\`); got != `/mnt/a b\\` {
		t.Fatalf("%q", got)
	}
}
