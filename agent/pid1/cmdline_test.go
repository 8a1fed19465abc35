package pid1

import (
	"reflect"
	"testing"
)

func TestParseCmdline(t *testing.T) {
	got := ParseCmdline(`console=ttyS0 quiet  supermachine.vsock_port=2048 supermachine.debug ` +
		`init="/sbin/my init" a=b=c supermachine.serial_port="port name" x=1 x=2 "q=ok" -- supermachine.vsock_port=1` + "\n")
	want := map[string]string{
		"console": "ttyS0", "quiet": "", "supermachine.vsock_port": "2048", "supermachine.debug": "",
		"init": "/sbin/my init", "a": "b=c", "supermachine.serial_port": "port name", "x": "2", "q": "ok",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q\nwant %q", got, want)
	}
	if got := ParseCmdline(""); len(got) != 0 {
		t.Fatalf("empty: %q", got)
	}
}
