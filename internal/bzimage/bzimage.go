// Package bzimage reads the x86 Linux boot image format: it finds the
// compressed kernel (the payload) in a bzImage and decodes it to the
// kernel's ELF image, vmlinux, when the payload is LZ4 (the compression
// the bundled amd64 kernel is built with).
//
// A bzImage is a real-mode setup part, then the protected-mode part: a
// small decompressor followed by the payload, the compressed vmlinux. The
// boot protocol header (Documentation/arch/x86/boot.rst) gives the setup
// part's length (setup_sects, at 0x1f1) and, from protocol 2.08 on, the
// payload's offset and length within the protected-mode part
// (payload_offset at 0x248, payload_length at 0x24c).
//
// The kernel build compresses vmlinux with "lz4 -l", the LZ4 legacy frame:
// the magic 02 21 4c 18, then blocks, each a 32-bit little-endian
// compressed length and an LZ4 block of at most 8 MiB decoded; then the
// build appends the decoded length as a 32-bit little-endian number. The
// blocks are decoded with github.com/pierrec/lz4/v4's block decoder; the
// framing, which is all this package parses itself, is checked strictly
// and never allocates more than the caller allows.
package bzimage

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/pierrec/lz4/v4"
)

// LZ4 legacy frame constants (lz4/doc/lz4_Frame_format.md, "Legacy frame").
const (
	legacyMagic     = 0x184C2102
	legacyBlockSize = 8 << 20 // decoded size of every block but the last
	// maxCompressedBlock is LZ4_compressBound(8 MiB): no valid block of
	// the legacy frame is longer.
	maxCompressedBlock = legacyBlockSize + legacyBlockSize/255 + 16
)

// ErrNotLZ4 is matched by the error Vmlinux returns for a bzImage whose
// payload is not LZ4 (a kernel built with another compression).
var ErrNotLZ4 = errors.New("bzImage payload is not LZ4 (legacy frame magic 02 21 4c 18)")

// Payload returns the compressed kernel inside the bzImage bz: a slice of
// bz, not a copy.
func Payload(bz []byte) ([]byte, error) {
	// The header fields this needs end at 0x250.
	if len(bz) < 0x250 || string(bz[0x202:0x206]) != "HdrS" {
		return nil, errors.New("not an x86 bzImage: no HdrS boot header at 0x202")
	}
	if v := binary.LittleEndian.Uint16(bz[0x206:]); v < 0x208 {
		return nil, fmt.Errorf("bzImage boot protocol %d.%02d has no payload fields (need 2.08 or later)", v>>8, v&0xff)
	}
	setupSects := int64(bz[0x1f1])
	if setupSects == 0 {
		setupSects = 4 // boot protocol: 0 means 4
	}
	start := (setupSects + 1) * 512
	off := int64(binary.LittleEndian.Uint32(bz[0x248:]))
	n := int64(binary.LittleEndian.Uint32(bz[0x24c:]))
	if begin, end := start+off, start+off+n; n == 0 || end > int64(len(bz)) {
		return nil, fmt.Errorf("bzImage payload (offset %#x, %d bytes) lies outside the %d-byte image", begin, n, len(bz))
	}
	return bz[start+off : start+off+n], nil
}

// DecodedSize returns the length of the vmlinux that the LZ4 payload of
// the bzImage bz decodes to, as the trailer after its blocks says.
func DecodedSize(bz []byte) (int64, error) {
	p, err := Payload(bz)
	if err != nil {
		return 0, err
	}
	if len(p) < 8 || binary.LittleEndian.Uint32(p) != legacyMagic {
		return 0, ErrNotLZ4
	}
	return int64(binary.LittleEndian.Uint32(p[len(p)-4:])), nil
}

// Vmlinux decodes the LZ4 payload of the bzImage bz and returns the
// kernel's ELF image, which must be exactly size bytes long (the caller
// knows the size from the manifest, or from DecodedSize). It checks the
// framing and the decoded length, not the content: callers compare the
// result's SHA-256 with the one they expect.
func Vmlinux(bz []byte, size int64) ([]byte, error) {
	p, err := Payload(bz)
	if err != nil {
		return nil, err
	}
	return DecodeLegacy(p, size)
}

// maxSize bounds the decoded length a caller may ask for: a kernel ELF is
// tens of megabytes; 1 GiB is far beyond any.
const maxSize = 1 << 30

// DecodeLegacy decodes an LZ4 legacy frame (as the kernel build writes it,
// with or without its 4-byte decoded-length trailer) that must decode to
// exactly size bytes. Blocks are independent in this format, so they
// decode in parallel.
func DecodeLegacy(p []byte, size int64) ([]byte, error) {
	if size < 0 || size > maxSize {
		return nil, fmt.Errorf("lz4: decoded size %d out of range", size)
	}
	if len(p) < 4 || binary.LittleEndian.Uint32(p) != legacyMagic {
		return nil, ErrNotLZ4
	}
	blocks, trailer, err := splitLegacy(p[4:], size)
	if err != nil {
		return nil, err
	}
	if trailer >= 0 && trailer != size {
		return nil, fmt.Errorf("lz4: trailer says %d decoded bytes, want %d", trailer, size)
	}
	out := make([]byte, size)
	errs := make([]error, len(blocks))
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for i, b := range blocks {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs[i] = b.decode(out)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("lz4: block %d of %d: %w", i+1, len(blocks), err)
		}
	}
	return out, nil
}

// block is one compressed block and where its bytes go in the output.
type block struct {
	src      []byte
	off, end int64 // output range: every block but the last fills 8 MiB
}

func (b block) decode(out []byte) error {
	n, err := lz4.UncompressBlock(b.src, out[b.off:b.end])
	if err != nil {
		return err
	}
	if int64(n) != b.end-b.off {
		return fmt.Errorf("decoded %d bytes, want %d", n, b.end-b.off)
	}
	return nil
}

// splitLegacy walks the blocks after the magic and assigns each its output
// range for a total of size bytes. It returns the trailer's decoded length,
// or -1 if the frame has none.
func splitLegacy(p []byte, size int64) (blocks []block, trailer int64, err error) {
	var off int64
	for {
		switch {
		case len(p) == 0:
			trailer = -1
		case len(p) == 4 && off > 0:
			// With the blocks all read, four bytes left are the length
			// trailer the kernel build appends.
			trailer = int64(binary.LittleEndian.Uint32(p))
		case len(p) < 4:
			return nil, 0, fmt.Errorf("lz4: %d stray bytes after block %d", len(p), len(blocks))
		default:
			n := binary.LittleEndian.Uint32(p)
			p = p[4:]
			if n == legacyMagic {
				continue // concatenated frames
			}
			if n == 0 || n > maxCompressedBlock || int64(n) > int64(len(p)) {
				return nil, 0, fmt.Errorf("lz4: block %d: compressed length %d invalid (%d bytes left)", len(blocks)+1, n, len(p))
			}
			if off >= size {
				return nil, 0, fmt.Errorf("lz4: block %d beyond the decoded size %d", len(blocks)+1, size)
			}
			end := min(off+legacyBlockSize, size)
			blocks = append(blocks, block{src: p[:n], off: off, end: end})
			off = end
			p = p[n:]
			continue
		}
		break
	}
	if off != size {
		return nil, 0, fmt.Errorf("lz4: %d blocks decode to at most %d bytes, want %d", len(blocks), off, size)
	}
	return blocks, trailer, nil
}

// xenElfnotePhys32Entry is the ELF note type of the PVH entry point
// (XEN_ELFNOTE_PHYS32_ENTRY in xen/include/public/elfnote.h), in a note
// named "Xen".
const xenElfnotePhys32Entry = 18

// PVHEntry returns the 32-bit physical entry address of the ELF kernel
// image vmlinux given by its Xen PVH note, the entry QEMU (-kernel with an
// ELF), Firecracker and Cloud Hypervisor use. It fails if vmlinux is not
// an x86-64 ELF or has no such note.
func PVHEntry(vmlinux []byte) (uint32, error) {
	f, err := elf.NewFile(bytes.NewReader(vmlinux))
	if err != nil {
		return 0, fmt.Errorf("not an ELF file: %w", err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 || f.Class != elf.ELFCLASS64 {
		return 0, fmt.Errorf("ELF is %v %v, want x86-64", f.Class, f.Machine)
	}
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE || p.Filesz > 1<<20 {
			continue
		}
		notes := make([]byte, p.Filesz)
		if _, err := p.ReadAt(notes, 0); err != nil {
			return 0, fmt.Errorf("reading ELF notes: %w", err)
		}
		for len(notes) >= 12 {
			nsz := int(binary.LittleEndian.Uint32(notes))
			dsz := int(binary.LittleEndian.Uint32(notes[4:]))
			typ := binary.LittleEndian.Uint32(notes[8:])
			nameEnd := 12 + (nsz+3)&^3
			descEnd := nameEnd + (dsz+3)&^3
			if nsz < 0 || dsz < 0 || descEnd > len(notes) || descEnd < nameEnd {
				break
			}
			name := bytes.TrimRight(notes[12:12+nsz], "\x00")
			if string(name) == "Xen" && typ == xenElfnotePhys32Entry && dsz >= 4 {
				return binary.LittleEndian.Uint32(notes[nameEnd:]), nil
			}
			notes = notes[descEnd:]
		}
	}
	return 0, errors.New("ELF has no Xen PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY): the kernel needs CONFIG_PVH")
}
