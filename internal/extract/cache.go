package extract

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"github.com/supermachine-go/supermachine-kernel/internal/atomicfile"
)

// Cache is a content-addressed directory of verified assets: the asset
// whose decoded SHA-256 is H lives at Dir/H/<file>, under the file name
// its caller gives.
//
// The warm path (the file is already there) is cheap: Path trusts the file
// if it is a regular file of the right size and mode and the stamp
// Dir/H/.<file>.verified, written after the file was verified in full,
// still describes it: same device, inode, size, mode, modification and
// change time (Linux and macOS; elsewhere size, mode and modification
// time). Any write to the file, a chmod, or a replacement changes the
// change time, which users cannot set; then, or when Verify is set, Path
// hashes the whole file again, and rewrites it if it does not verify.
type Cache struct {
	Dir    string // the cache root; must not be empty
	Verify bool   // hash the cached file in full on every call
}

// Path returns the path of the verified file holding src in the cache,
// Dir/<src.SHA256>/file with permission bits mode, decoding and writing it
// first if it is missing or does not verify.
// Concurrent calls for the same src, from goroutines or processes, all
// return the same path to one identical file.
func (c Cache) Path(ctx context.Context, src Source, file string, mode fs.FileMode) (string, error) {
	if c.Dir == "" {
		return "", errors.New("extract: empty cache directory")
	}
	dir := filepath.Join(c.Dir, src.SHA256)
	final := filepath.Join(dir, file)
	stamp := stampPath(dir, file)

	fi, err := os.Lstat(final)
	if err == nil && usable(fi, src, mode) {
		if !c.Verify && readStamp(stamp) == stampLine(src, fi) {
			return final, nil
		}
		if VerifyFile(final, src) == nil {
			writeStamp(stamp, src, final)
			return final, nil
		}
	}
	// Missing or bad: write it. A bad file (present but not verifying)
	// is replaced; a missing one is linked in without replacing, so
	// that the first of concurrent writers wins and stays.
	replace := err == nil
	if err := write(ctx, final, src, mode, replace); err != nil {
		return "", &fs.PathError{Op: "cache " + src.Name + " at", Path: final, Err: err}
	}
	return final, nil
}

// usable reports whether fi looks like a finished cache entry for src
// with permission bits mode.
func usable(fi fs.FileInfo, src Source, mode fs.FileMode) bool {
	return fi.Mode().IsRegular() && fi.Size() == src.Size && fi.Mode().Perm() == mode.Perm()
}

// write decodes src into the cache entry final.
func write(ctx context.Context, final string, src Source, mode fs.FileMode, replace bool) error {
	dir, file := filepath.Split(final)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	f, err := atomicfile.Create(final, mode)
	if err != nil {
		return err
	}
	defer f.Cleanup()
	if err := copyVerified(ctx, f, src); err != nil {
		return err
	}
	if replace {
		// The file there did not verify: replace it.
		err = f.Replace()
	} else {
		// Link without replacing: of concurrent writers the first
		// wins; the others find its file, the same bytes, verified
		// before it got this name.
		_, err = f.Link()
	}
	if err != nil {
		return err
	}
	// The stamp describes final as it is now: after the temporary name
	// is gone (an unlink changes the link count and so the change time).
	writeStamp(stampPath(dir, file), src, final)
	return nil
}

// stampPath is where the stamp of the cache entry dir/file lives.
func stampPath(dir, file string) string { return filepath.Join(dir, "."+file+".verified") }

// stampLine is the content of a stamp for src stored in the file fi.
func stampLine(src Source, fi fs.FileInfo) string {
	return "supermachine-kernel verified v1 sha256=" + src.SHA256 + " " + fileID(fi) + "\n"
}

// genericFileID identifies a file by portable stat information.
func genericFileID(fi fs.FileInfo) string {
	return "size=" + strconv.FormatInt(fi.Size(), 10) +
		" mode=" + strconv.FormatUint(uint64(fi.Mode()), 8) +
		" mtime=" + strconv.FormatInt(fi.ModTime().UnixNano(), 10)
}

// readStamp returns the stamp at path, or "" if there is none.
func readStamp(path string) string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) > 1024 {
		return ""
	}
	return string(b)
}

// writeStamp records that the file at final verified in full. It is best
// effort: a read-only cache without stamps still works, only more slowly
// (every call hashes the file).
func writeStamp(stamp string, src Source, final string) {
	fi, err := os.Lstat(final)
	if err != nil {
		return
	}
	line := stampLine(src, fi)
	if readStamp(stamp) == line {
		return
	}
	// Best effort, so no error is reported; written atomically, so a
	// reader never sees half a stamp.
	_ = atomicfile.WriteFile(context.Background(), stamp, []byte(line), 0o644)
}
