// Command lz4stored writes its standard input to its standard output as an
// LZ4 legacy frame whose blocks hold only literals: an LZ4 stream that any
// LZ4 decoder reads, with the data stored rather than compressed.
//
// The asset pipeline passes it to the x86-64 kernel build as LZ4=, which
// the build runs as "$(LZ4) -l -9 - -" to make the bzImage payload. The
// bzImage keeps its format, its LZ4 decompressor and its KASLR, while the
// payload stays the plain vmlinux bytes that the module's xz compresses
// far better than it compresses LZ4 output (see tools/kernel/POLICY.md).
//
// Usage (the arguments are exactly those the kernel build gives):
//
//	lz4stored -l -9 - - <vmlinux.bin >vmlinux.bin.lz4
package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
)

// LZ4 legacy frame (lz4/doc/lz4_Frame_format.md, "Legacy frame"): a magic
// number, then blocks of at most 8 MiB decoded, each preceded by its
// compressed length. The kernel's pre-boot decoder needs every block but
// the last to decode to exactly 8 MiB, as lz4 -l writes them.
const (
	legacyMagic = 0x184C2102
	blockSize   = 8 << 20
)

func main() {
	if err := checkArgs(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "lz4stored: %v\nusage: lz4stored -l -9 - - <in >out\n", err)
		os.Exit(2)
	}
	out := bufio.NewWriterSize(os.Stdout, 1<<20)
	if err := writeStored(out, os.Stdin); err != nil {
		fmt.Fprintf(os.Stderr, "lz4stored: %v\n", err)
		os.Exit(1)
	}
	if err := out.Flush(); err != nil {
		fmt.Fprintf(os.Stderr, "lz4stored: writing standard output: %v\n", err)
		os.Exit(1)
	}
}

// checkArgs accepts the kernel build's arguments: -l (the legacy frame,
// the only one written), a level (ignored: nothing is compressed), and
// "-" for standard input and output.
func checkArgs(args []string) error {
	if !slices.Contains(args, "-l") {
		return errors.New("-l (legacy frame) is required: it is the only format written")
	}
	for _, a := range args {
		switch a {
		case "-l", "-", "-1", "-2", "-3", "-4", "-5", "-6", "-7", "-8", "-9", "-10", "-11", "-12":
		default:
			return fmt.Errorf("unsupported argument %q", a)
		}
	}
	return nil
}

// writeStored copies r to w as a legacy frame of literal-only blocks.
func writeStored(w io.Writer, r io.Reader) error {
	var hdr [4]byte
	binary.LittleEndian.PutUint32(hdr[:], legacyMagic)
	if _, err := w.Write(hdr[:]); err != nil {
		return fmt.Errorf("writing the frame header: %w", err)
	}
	buf := make([]byte, blockSize)
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			if werr := writeBlock(w, buf[:n]); werr != nil {
				return werr
			}
		}
		switch {
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			return nil
		case err != nil:
			return fmt.Errorf("reading standard input: %w", err)
		}
	}
}

// writeBlock writes one block: its length, then a single LZ4 sequence of
// len(lit) literals and no match (LZ4 block format: the token's high
// nibble is the literal count, 15 meaning more follows in bytes of 255
// ending with one below 255).
func writeBlock(w io.Writer, lit []byte) error {
	head := literalHeader(len(lit))
	var size [4]byte
	binary.LittleEndian.PutUint32(size[:], uint32(len(head)+len(lit)))
	for _, b := range [][]byte{size[:], head, lit} {
		if _, err := w.Write(b); err != nil {
			return fmt.Errorf("writing a block: %w", err)
		}
	}
	return nil
}

// literalHeader returns the token and length bytes of a literal run of n
// bytes.
func literalHeader(n int) []byte {
	if n < 15 {
		return []byte{byte(n << 4)}
	}
	h := make([]byte, 1, 2+(n-15)/255)
	h[0] = 15 << 4
	for rest := n - 15; ; rest -= 255 {
		if rest < 255 {
			return append(h, byte(rest))
		}
		h = append(h, 255)
	}
}
