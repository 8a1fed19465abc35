package protocol

import "io/fs"

// Mode bits on the wire are POSIX st_mode permission bits, whatever the
// host OS: 0o777 plus set-user-ID, set-group-ID and sticky.
const (
	modeSetuid = 0o4000
	modeSetgid = 0o2000
	modeSticky = 0o1000
)

// WireMode converts an fs.FileMode to wire mode bits.
func WireMode(m fs.FileMode) uint32 {
	out := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		out |= modeSetuid
	}
	if m&fs.ModeSetgid != 0 {
		out |= modeSetgid
	}
	if m&fs.ModeSticky != 0 {
		out |= modeSticky
	}
	return out
}

// FileMode converts wire mode bits to an fs.FileMode.
func FileMode(m uint32) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	if m&modeSetuid != 0 {
		mode |= fs.ModeSetuid
	}
	if m&modeSetgid != 0 {
		mode |= fs.ModeSetgid
	}
	if m&modeSticky != 0 {
		mode |= fs.ModeSticky
	}
	return mode
}
