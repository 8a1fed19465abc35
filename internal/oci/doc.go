// Package oci turns container images into root images for the guest: a
// registry reference, an OCI image layout, an OCI archive or a docker
// save archive becomes one squashfs file, kept in a cache by content.
//
// go-containerregistry reads references, registries (with the Docker
// keychain), layouts and archives. The layers are flattened in order by
// Tree, with OCI whiteouts and opaque directories, keeping hard links,
// symbolic links, device nodes, FIFOs, modes, owners, modification times
// and extended attributes, security.capability included, all taken from
// the tar headers: nothing is written to the host as files, and no
// privilege is needed. The flattened tree goes as one tar stream into
// squashfs-tools' sqfstar. The root image is a function of the image
// alone: the same layers give the same bytes.
//
// The cache (Options.Dir) holds
//
//	<dir>/<ConverterVersion>/sha256-<hex>/root.squashfs   the root image
//	<dir>/<ConverterVersion>/sha256-<hex>/image.json      the image's run settings (env, working directory, user, entrypoint, cmd)
//	<dir>/refs/<hash>                                       what a tag or an index resolved to
//
// keyed by the digest of the image manifest for the guest's platform
// (for an index, the one chosen for the arch; a docker save archive has
// no manifest of its own, so its config digest). Every file is written
// to a temporary name and linked or renamed into place; image.json last,
// so an entry with one is complete. Any of these may be deleted when no
// boot is starting from it.
//
// Whoever writes an entry, or a temporary directory of the cache
// (<dir>/.archive-*: an OCI archive extracted; <dir>/<ConverterVersion>/.removing-*:
// an entry being removed), holds an flock(2) on the lock file of the same
// name plus ".lock" beside it, and deletes that file when done. A second
// conversion of the image waits for the lock; a sweep at the start of
// Prepare and List removes the incomplete entries and temporary
// directories whose lock nobody holds: the kernel drops a lock when its
// holder dies, however it dies. Where the file system has no flock the
// cache works unlocked: concurrent conversions of one image each convert
// (the first to finish wins) and nothing is swept.
package oci
