//go:build !linux && !darwin

package extract

import "io/fs"

// fileID identifies a file by what portable stat information gives:
// size, mode and modification time.
func fileID(fi fs.FileInfo) string { return genericFileID(fi) }
