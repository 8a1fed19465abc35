// Package atomicfile writes files atomically and crash-safely, the way
// cmd/go's renameio and module cache do.
//
// The bytes go to a temporary file ".<name>.tmp-*" in the destination's
// directory, which holds an exclusive flock while it is being written
// (where the system has flock). Commit syncs it, gives it its mode and
// renames it over the destination (Replace) or hard-links it to the
// destination without replacing anything (Link); then it syncs the
// directory. A reader of the destination sees the old file, no file, or
// the complete new one, never a partial one, even if the writer crashes.
//
// The only thing a crash can leave behind is a temporary file. Create
// removes the temporaries of its destination that no live process holds
// and that are older than StaleAge: the kernel drops a flock when its
// process dies, however it dies, so an unlocked temporary is abandoned.
//
// Destinations that are symbolic links, dangling or not, are refused
// (ErrSymlink) rather than followed or replaced, unless the writer asks
// for them to be replaced (CreateWith); directories are always refused
// (syscall.EISDIR). CreateWith also gives the file an owner.
package atomicfile
