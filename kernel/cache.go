package kernel

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/supermachine-go/supermachine-kernel/internal/extract"
)

// CacheEnv names the environment variable that overrides the default
// cache directory.
const CacheEnv = "SUPERMACHINE_KERNEL_CACHE"

// A Cache is a content-addressed directory of extracted assets. The asset
// whose decoded SHA-256 is H is kept at
//
//	<Dir>/<H>/<file>
//
// where <file> is Asset.File: "bzImage" (amd64) or "Image" (arm64),
// "busybox", "supermachine-agent". An asset is extracted once per content
// hash; after that, its path is returned without decoding anything. A new
// release with other bytes gets another directory; old ones are never
// touched and may be deleted at any time when no VM uses them.
//
// The warm path is cheap (a few microseconds per asset): a file is trusted
// if it is a regular file of the right size and mode and a stamp written
// beside it (.<file>.verified) after a full SHA-256 check still matches
// its device, inode, size, mode, modification and change time. A write to
// the file, a chmod or a replacement changes the change time, which users
// cannot set, so the file is then hashed again, and re-extracted if it
// does not verify. Set Verify to hash it on every call anyway.
//
// Concurrent users of one cache, goroutines or processes, are safe: each
// writes a temporary file, verifies it and hard-links it into place
// without replacing; the first wins, and all get the same path to one
// identical file. A process killed mid-way leaves at most a temporary
// file .<file>.tmp-*, which a later extraction into the same directory
// removes.
//
// The zero Cache is the default cache.
type Cache struct {
	// Dir is the cache root. If empty, the root is $SUPERMACHINE_KERNEL_CACHE,
	// or else the directory supermachine-kernel in os.UserCacheDir
	// (~/.cache/supermachine-kernel on Linux,
	// ~/Library/Caches/supermachine-kernel on macOS).
	Dir string

	// Verify makes every call hash the cached file in full (about 10 ms
	// for all three assets) instead of trusting the stamp.
	Verify bool
}

// DefaultCacheDir returns the directory the zero Cache uses: the value of
// the environment variable SUPERMACHINE_KERNEL_CACHE if set, else
// supermachine-kernel in os.UserCacheDir.
func DefaultCacheDir() (string, error) {
	if dir := os.Getenv(CacheEnv); dir != "" {
		return dir, nil
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("kernel: no cache directory (set %s): %w", CacheEnv, err)
	}
	return filepath.Join(dir, "supermachine-kernel"), nil
}

// dir returns the absolute cache root.
func (c Cache) dir() (string, error) {
	dir := c.Dir
	if dir == "" {
		var err error
		if dir, err = DefaultCacheDir(); err != nil {
			return "", err
		}
	}
	return filepath.Abs(dir)
}

// Path returns the absolute path of the verified asset a in the cache,
// extracting it first if needed.
func (c Cache) Path(ctx context.Context, a *Asset) (string, error) {
	dir, err := c.dir()
	if err != nil {
		return "", err
	}
	return extract.Cache{Dir: dir, Verify: c.Verify}.Path(ctx, a.source(), a.File(), a.Mode())
}

// All returns the paths of all three assets in the cache, extracting the
// missing ones in parallel.
func (c Cache) All(ctx context.Context) (Paths, error) {
	return all(ctx, func(ctx context.Context, a *Asset) (string, error) { return c.Path(ctx, a) })
}

// Paths holds the paths of the three assets, as ExtractAll and CacheAll
// return them.
type Paths struct {
	Kernel  string // the kernel: .../bzImage (amd64) or .../Image (arm64)
	Busybox string // .../busybox
	Agent   string // .../supermachine-agent
}

// CacheAll returns the paths of all three assets in the default cache,
// extracting the missing ones in parallel. It is the usual way for a VMM
// to find its assets:
//
//	paths, err := kernel.CacheAll(ctx)
//	// boot paths.Kernel, put paths.Busybox and paths.Agent in the initramfs
func CacheAll(ctx context.Context) (Paths, error) { return Cache{}.All(ctx) }

// ExtractAll writes all three assets into dir, which it creates if
// needed, under their file names (Asset.File), decoding them in parallel.
// Each file is written as by Asset.ExtractTo.
func ExtractAll(ctx context.Context, dir string) (Paths, error) {
	return all(ctx, func(ctx context.Context, a *Asset) (string, error) {
		p := filepath.Join(dir, a.File())
		return p, extract.WriteFile(ctx, p, a.source(), a.Mode(), true)
	})
}

// all runs get for the three assets at once. The three xz streams are
// independent, so they decode on three goroutines; the first error
// cancels the others and is returned.
func all(ctx context.Context, get func(context.Context, *Asset) (string, error)) (Paths, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	assets := Assets()
	paths := make([]string, len(assets))
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	for i, a := range assets {
		wg.Go(func() {
			p, err := get(ctx, a)
			if err != nil {
				mu.Lock()
				// An error caused by the cancel below is not news.
				if firstErr == nil || (errors.Is(firstErr, context.Canceled) && !errors.Is(err, context.Canceled)) {
					firstErr = err
				}
				mu.Unlock()
				cancel()
				return
			}
			paths[i] = p
		})
	}
	wg.Wait()
	if firstErr != nil {
		return Paths{}, firstErr
	}
	return Paths{Kernel: paths[0], Busybox: paths[1], Agent: paths[2]}, nil
}
