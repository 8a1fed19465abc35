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
package oci
