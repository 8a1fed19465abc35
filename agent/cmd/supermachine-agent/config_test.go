//go:build linux

package main

import (
	"io"
	"reflect"
	"strings"
	"testing"
)

func TestParseConfig(t *testing.T) {
	def := config{vsockPort: 1024, serialPort: "supermachine.agent"}
	tests := []struct {
		name     string
		args     []string
		cmdline  string
		want     config
		warnings int
	}{
		{"defaults", nil, "", def, 0},
		{"flags", []string{"-vsock-port", "0", "-serial-port", "", "-allow-any-cid", "-debug", "-listen-unix", "/tmp/s"}, "",
			config{vsockPort: 0, serialPort: "", allowAnyCID: true, listenUnix: "/tmp/s", debug: true}, 0},
		{"cmdline", nil, "console=ttyS0 supermachine.vsock_port=2048 supermachine.serial_port=ctl supermachine.allow_any_cid=1 supermachine.debug",
			config{vsockPort: 2048, serialPort: "ctl", allowAnyCID: true, debug: true}, 0},
		{"flag wins", []string{"-vsock-port=5", "-debug=false"}, "supermachine.vsock_port=2048 supermachine.debug=1",
			config{vsockPort: 5, serialPort: "supermachine.agent"}, 0},
		{"cmdline off", nil, "supermachine.allow_any_cid=0 supermachine.vsock_port=0", config{serialPort: "supermachine.agent"}, 0},
		{"initramfs parameters are not the agent's", nil, "supermachine.root=/dev/vdb supermachine.rootfstype=ext4 supermachine.overlay_size=1g supermachine.mount=a:/b:ext4", def, 0},
		{"bad values are ignored", nil, "supermachine.vsock_port=abc supermachine.debug=maybe supermachine.frobnicate=1", def, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, warnings, err := parseConfig(tt.args, tt.cmdline, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*got, tt.want) {
				t.Fatalf("got %+v, want %+v", *got, tt.want)
			}
			if len(warnings) != tt.warnings {
				t.Fatalf("warnings %q", warnings)
			}
			for _, w := range warnings {
				if !strings.HasPrefix(w, "kernel command line: ") {
					t.Fatalf("warning %q", w)
				}
			}
		})
	}
	if _, _, err := parseConfig([]string{"-vsock-port", "x"}, "", io.Discard); err == nil {
		t.Fatal("bad flag accepted")
	}
	if _, _, err := parseConfig([]string{"extra"}, "", io.Discard); err == nil {
		t.Fatal("extra argument accepted")
	}
}
