//go:build unix

package atomicfile

import "os"

// syncDir makes the directory entries of dir durable: the rename or link
// that put a file there survives a crash once this returns.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
