package main

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"regexp"

	archfacts "github.com/supermachine-go/supermachine-kernel/internal/arch"
	"github.com/supermachine-go/supermachine-kernel/internal/extract"
)

// checkAsset checks that data is what the named asset of arch must be:
// a Linux 6.12 kernel image of the arch's format, or a static executable
// of the arch's machine type (with the init's applets, for busybox).
func checkAsset(arch, name string, data []byte, applets []string) error {
	switch name {
	case "kernel":
		_, err := kernelRelease(arch, data)
		return err
	case "busybox":
		if err := checkStaticELF(arch, data); err != nil {
			return err
		}
		if missing := missingApplets(data, applets); len(missing) > 0 {
			return fmt.Errorf("busybox lacks applets %q", missing)
		}
		return nil
	case "agent":
		if err := checkStaticELF(arch, data); err != nil {
			return err
		}
		if !bytes.Contains(data, []byte("supermachine-agent")) {
			return errors.New("not the supermachine agent (no \"supermachine-agent\" string)")
		}
		return nil
	}
	return fmt.Errorf("unknown asset %q", name)
}

var linuxVersion = regexp.MustCompile(`Linux version (6\.12\.[0-9]+[^ ]*) `)

// kernelRelease checks the image format and returns the kernel release.
func kernelRelease(arch string, data []byte) (string, error) {
	switch arch {
	case "amd64":
		// Boot protocol header: "HdrS" at 0x202; the version string's
		// offset (from 0x200) is the 16-bit field at 0x20e.
		if len(data) < 0x300 || string(data[0x202:0x206]) != "HdrS" {
			return "", errors.New("not an x86 bzImage (no HdrS boot header at 0x202)")
		}
		off := int(binary.LittleEndian.Uint16(data[0x20e:])) + 0x200
		if off >= len(data) {
			return "", errors.New("bzImage kernel_version offset out of range")
		}
		s := data[off:]
		if i := bytes.IndexByte(s, 0); i >= 0 {
			s = s[:i]
		}
		rel, _, _ := bytes.Cut(s, []byte(" "))
		if !bytes.HasPrefix(rel, []byte("6.12.")) {
			return "", fmt.Errorf("bzImage is kernel %q, want 6.12.x", rel)
		}
		return string(rel), nil
	case "arm64":
		// arm64 Image header: magic "ARM\x64" at 0x38.
		if len(data) < 0x40 || string(data[0x38:0x3c]) != "ARM\x64" {
			return "", errors.New("not an arm64 Image (no ARM\\x64 magic at 0x38)")
		}
		m := linuxVersion.FindSubmatch(data)
		if m == nil {
			return "", errors.New("arm64 Image has no \"Linux version 6.12.x\" banner")
		}
		return string(m[1]), nil
	}
	return "", fmt.Errorf("unknown arch %q", arch)
}

// checkStaticELF checks the machine type and that there is no program
// interpreter and no shared-library dependency.
func checkStaticELF(arch string, data []byte) error {
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("not an ELF file: %w", err)
	}
	defer f.Close()
	if want := archfacts.All[arch].ELFMachine; f.Machine != want {
		return fmt.Errorf("ELF machine is %v, want %v", f.Machine, want)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return errors.New("dynamically linked (has a PT_INTERP program interpreter)")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		return fmt.Errorf("needs shared libraries %q", libs)
	}
	return nil
}

// missingApplets looks the names up in busybox's applet name table, a run
// of NUL-terminated names.
func missingApplets(data []byte, applets []string) []string {
	var missing []string
	for _, a := range applets {
		if !bytes.Contains(data, []byte("\x00"+a+"\x00")) {
			missing = append(missing, a)
		}
	}
	return missing
}

// decodeBlob reads and decodes a packed blob with the extractor the
// facade uses, checking both hashes and the size against its manifest entry.
func decodeBlob(path string, a *assetInfo) ([]byte, error) {
	packed, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if got := sha256Hex(packed); got != a.XZ.SHA256 {
		return nil, fmt.Errorf("%s: SHA-256 %s, manifest says %s", path, got, a.XZ.SHA256)
	}
	raw, err := extract.Decode(extract.Source{Name: a.Name, XZ: string(packed), Size: a.Size, SHA256: a.SHA256})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return raw, nil
}
