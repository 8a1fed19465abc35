package microvm_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/supermachine-go/supermachine-kernel/microvm"
)

// Boot the host's own root, shared read-only (the guest's writes stay in
// its overlay), with a writable work directory, over virtio-fs when this
// process may use it and 9p otherwise: what vmexec does for a test
// binary.
func ExampleConfig_shareRoot() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "work")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	vm, err := microvm.Start(ctx, microvm.Config{
		Root: "/", ShareRoot: true, Sharing: microvm.SharingAuto,
		Shares: []microvm.Share{{HostDir: dir, GuestPath: dir, Writable: true}},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer vm.Kill() // nothing to flush: the host's files are written through
	// The host's own shell, reading the host's /etc/os-release.
	script := `. /etc/os-release && echo "$ID" > ` + dir + `/os`
	if err := vm.Command(ctx, "/bin/sh", "-c", script).Run(); err != nil {
		log.Fatal(err)
	}
	guest, err := os.ReadFile(filepath.Join(dir, "os"))
	if err != nil {
		log.Fatal(err)
	}
	host, err := exec.Command("/bin/sh", "-c", `. /etc/os-release && echo "$ID"`).Output()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(guest) == string(host))
	// Output: true
}
