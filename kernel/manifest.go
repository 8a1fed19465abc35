package kernel

// Info is the manifest of the embedded assets as the facade sees them:
// which arch they are for and, for each asset, the file name and mode it
// is extracted with, its versions, sizes and hashes. Its values come from
// the arch module's generated constants, which say what its manifest.json
// says (a test compares them).
//
// Its JSON encoding, which supermachine-kernel info -json prints, is a
// schema of its own, not manifest.json's. manifest.json is the asset
// pipeline's record of the packed blobs: its "file" is the blob
// ("kernel.xz"), the xz facts nest under "xz" with the xz version, and the
// kernel's config file is named. Info describes what a program gets: "file"
// is the extracted file ("bzImage" or "Image"), "mode" is its permission
// bits as a number (420 is 0644), and the xz facts are flat ("xz_size",
// "xz_sha256", "xz_settings").
type Info struct {
	Arch            string    `json:"arch"`              // "amd64" or "arm64"
	SourceDateEpoch int64     `json:"source_date_epoch"` // fixed build time of the assets
	Kernel          AssetInfo `json:"kernel"`
	Busybox         AssetInfo `json:"busybox"`
	Agent           AssetInfo `json:"agent"`
	// Vmlinux is the ELF kernel derived from the bzImage (see Vmlinux):
	// amd64 only; nil on arm64, whose Kernel is already uncompressed.
	Vmlinux *AssetInfo `json:"vmlinux,omitempty"`
}

// Manifest returns the manifest of the embedded assets. It is built from
// constants: it decodes nothing.
func Manifest() Info {
	m := Info{
		Arch:            Arch,
		SourceDateEpoch: SourceDateEpoch,
		Kernel:          Kernel.Info(),
		Busybox:         Busybox.Info(),
		Agent:           Agent.Info(),
	}
	if Vmlinux != Kernel {
		v := Vmlinux.Info()
		m.Vmlinux = &v
	}
	return m
}
