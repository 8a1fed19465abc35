package kernel

// Info is the manifest of the embedded assets: which arch they are for,
// and for each, its versions, sizes and hashes. It says what the generated
// manifest.json of the arch module says, as a Go value; encoding/json
// encodes it with the same field names.
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
