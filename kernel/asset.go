package kernel

import (
	"context"
	"io"
	"io/fs"
	"sync"
	"sync/atomic"

	"github.com/supermachine-go/supermachine-kernel/internal/extract"
)

// AssetInfo describes one embedded asset, as the generated manifest of
// its arch module says.
type AssetInfo struct {
	Name         string      `json:"name"`                    // "kernel", "busybox" or "agent"
	File         string      `json:"file"`                    // file name when extracted: "bzImage" (amd64) or "Image" (arm64), "busybox", "supermachine-agent"
	Mode         fs.FileMode `json:"mode"`                    // permission bits of extracted files: 0644 for the kernel, 0755 for executables
	Size         int64       `json:"size"`                    // decoded length in bytes
	SHA256       string      `json:"sha256"`                  // hex SHA-256 of the decoded bytes
	XZSize       int64       `json:"xz_size"`                 // length of the embedded xz blob
	XZSHA256     string      `json:"xz_sha256"`               // hex SHA-256 of the embedded xz blob
	Version      string      `json:"version"`                 // kernel release (uname -r), Debian package version, or agent version
	Format       string      `json:"format"`                  // file format, e.g. "static ELF"
	Source       string      `json:"source"`                  // what it was built from
	Builder      string      `json:"builder"`                 // compiler or distribution that made it
	XZSettings   string      `json:"xz_settings"`             // xz(1) options the blob was packed with
	ConfigSHA256 string      `json:"config_sha256,omitempty"` // kernel only: hex SHA-256 of the kernel .config
}

// assetData is what an arch file provides for one asset: its xz blob,
// or for a derived asset (Vmlinux on amd64) the function that makes it.
type assetData struct {
	info   AssetInfo
	xz     func() string
	derive func(size int64) ([]byte, error)
}

// An Asset is one embedded file: Kernel, Busybox or Agent, or one derived
// from an embedded file: Vmlinux on amd64. Its methods
// decode it (lazily, verified), stream it, write it to a path, or find it
// in the cache. An Asset is safe for concurrent use.
type Asset struct {
	data assetData

	once sync.Once
	raw  atomic.Pointer[[]byte] // set once decoded and verified
	err  error
}

// Name returns the asset's name: "kernel", "busybox", "agent" or
// "vmlinux".
func (a *Asset) Name() string { return a.data.info.Name }

// File returns the asset's file name in the cache and in ExtractAll's
// directory: "bzImage" (amd64) or "Image" (arm64) for the kernel,
// "busybox", and "supermachine-agent".
func (a *Asset) File() string { return a.data.info.File }

// Len returns the decoded length in bytes (KernelLen, BusyboxLen or
// AgentLen).
func (a *Asset) Len() int64 { return a.data.info.Size }

// SHA256 returns the hex SHA-256 of the decoded bytes. Every way of
// getting the bytes checks it.
func (a *Asset) SHA256() string { return a.data.info.SHA256 }

// Version returns the asset's version: the kernel release (uname -r),
// busybox's Debian package version, or the agent's version.
func (a *Asset) Version() string { return a.data.info.Version }

// Mode returns the permission bits of the files this asset is written
// to: 0644 for the kernel, 0755 for busybox and the agent.
func (a *Asset) Mode() fs.FileMode { return a.data.info.Mode }

// Info returns everything the manifest says about the asset.
func (a *Asset) Info() AssetInfo { return a.data.info }

// String returns the asset's name.
func (a *Asset) String() string { return a.data.info.Name }

// Bytes returns the decoded asset. It decodes on the first call only,
// verifies the length and SHA-256, and keeps the result for the life of
// the process (Len bytes of memory); later calls, from any goroutine,
// return the same slice. Callers must not modify it: extracting or
// streaming a modified slice fails with ErrChecksum.
//
// Code that only needs a file uses ExtractTo or Cached instead, which
// stream and keep nothing in memory.
func (a *Asset) Bytes() ([]byte, error) {
	a.once.Do(func() {
		raw, err := extract.Decode(a.source())
		if err != nil {
			a.err = err
			return
		}
		a.raw.Store(&raw)
	})
	if a.err != nil {
		return nil, a.err
	}
	return *a.raw.Load(), nil
}

// NewReader returns a reader of the decoded asset. It decodes as it is
// read, so it needs only the decoder's window of memory, not Len bytes.
// At the end it returns io.EOF if the length and SHA-256 match, and an
// error matching ErrChecksum otherwise: act on the bytes only after the
// reader has returned io.EOF.
func (a *Asset) NewReader() (io.Reader, error) {
	return extract.NewReader(a.source())
}

// ExtractTo writes the asset to the file dest, with mode Mode, atomically:
// dest is either left as it was or holds the complete, verified asset,
// even if the process crashes. A regular file at dest is replaced. The
// parent directory must exist; see ExtractToWithParents.
//
// ExtractTo refuses a destination that is a directory (the error matches
// syscall.EISDIR) or a symbolic link, dangling or not (ErrSymlink). Its
// errors are *fs.PathError values naming dest, and match their cause with
// errors.Is: fs.ErrNotExist for a missing parent, syscall.EROFS or
// fs.ErrPermission for a directory it cannot write, syscall.ENOSPC,
// ErrChecksum.
func (a *Asset) ExtractTo(dest string) error {
	return extract.WriteFile(context.Background(), dest, a.source(), a.Mode(), false)
}

// ExtractToWithParents is ExtractTo that first creates the missing parent
// directories of dest (mode 0755, as os.MkdirAll).
func (a *Asset) ExtractToWithParents(dest string) error {
	return extract.WriteFile(context.Background(), dest, a.source(), a.Mode(), true)
}

// Cached returns the path of the asset in the default cache (see Cache),
// extracting it there first if it is not there yet.
func (a *Asset) Cached(ctx context.Context) (string, error) {
	return Cache{}.Path(ctx, a)
}

// source describes the asset to the extractor, with the decoded bytes if
// Bytes has already made them (so that nothing decodes twice).
func (a *Asset) source() extract.Source {
	info := a.data.info
	src := extract.Source{Name: info.Name, Size: info.Size, SHA256: info.SHA256}
	if a.data.xz != nil {
		src.XZ = a.data.xz()
	}
	if derive := a.data.derive; derive != nil {
		src.Derive = func() ([]byte, error) { return derive(info.Size) }
	}
	if raw := a.raw.Load(); raw != nil {
		src.Raw = *raw
	}
	return src
}
