package atomicfile_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/supermachine-go/supermachine-kernel/internal/atomicfile"
)

func ExampleWriteFile() {
	dir, err := os.MkdirTemp("", "atomicfile-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	dest := filepath.Join(dir, "config")
	if err := atomicfile.WriteFile(context.Background(), dest, []byte("v1\n"), 0o644); err != nil {
		fmt.Println(err)
		return
	}
	// A second write replaces the file as a whole.
	if err := atomicfile.WriteFile(context.Background(), dest, []byte("v2\n"), 0o644); err != nil {
		fmt.Println(err)
		return
	}
	b, _ := os.ReadFile(dest)
	fmt.Printf("%s", b)
	// Output: v2
}

func ExampleFile_Link() {
	dir, err := os.MkdirTemp("", "atomicfile-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	dest := filepath.Join(dir, "blob")
	// Two writers of the same content-addressed path: the first wins.
	for _, who := range []string{"first", "second"} {
		f, err := atomicfile.Create(dest, 0o644)
		if err != nil {
			fmt.Println(err)
			return
		}
		f.Write([]byte(who))
		existed, err := f.Link()
		f.Cleanup()
		fmt.Println(who, "existed:", existed, err)
	}
	b, _ := os.ReadFile(dest)
	fmt.Printf("%s\n", b)
	// Output:
	// first existed: false <nil>
	// second existed: true <nil>
	// first
}
