package kernel

import "github.com/supermachine-go/supermachine-kernel/internal/extract"

// ErrChecksum is matched, with errors.Is, by every error reporting that an
// asset did not verify: its blob did not decode, or decoded to the wrong
// length or SHA-256. It means a damaged binary or module cache, or a
// caller that modified the slice Bytes returned. errors.As finds the
// details in a *ChecksumError.
var ErrChecksum = extract.ErrChecksum

// ErrSymlink is matched, with errors.Is, by the error ExtractTo returns
// when its destination is a symbolic link, dangling or not: extraction
// never follows or replaces a symlink.
var ErrSymlink = extract.ErrSymlink

// ChecksumError reports an asset that did not verify: its Name, the Path
// of the file checked ("" for bytes in memory), the wanted and the found
// SHA-256 and length, and Err, the decoder's error if decoding failed.
// It matches ErrChecksum.
type ChecksumError = extract.ChecksumError
