// Package extract is the one place in this module that decodes the embedded
// xz blobs and writes them to files.
//
// Every path verifies: the decoded bytes are hashed with SHA-256, and
// nothing is handed out (a byte slice, the final bytes of a stream, a file
// at its destination) before the hash and the length match what the
// generated manifest promises.
//
// Two decoders. github.com/ulikunitz/xz is the reference: NewReader streams
// with it (memory: the stream's dictionary), always reading from an
// in-memory strings.Reader, never an unbuffered reader. Decode, WriteFile
// and Cache take a fast path first (blocks.go, package lzma2): the decoded
// length is known, so each xz block decodes straight into one output buffer
// (memory: the asset's length), several blocks on several goroutines; it
// checks every CRC of the format and the SHA-256, and on any failure the
// reference decoder runs instead and its verdict stands.
//
// Files are written with package atomicfile: the bytes go to a temporary
// file in the destination directory, which is verified, synced, given its
// final mode and then renamed (WriteFile) or hard-linked without replacing
// (Cache) to the destination; the directory is synced last. A crash at any
// point leaves either no file or the complete, verified file at the
// destination, never a partial one; a temporary file ".<name>.tmp-*" left
// by a dead writer is removed by the next write of that name (see
// atomicfile.StaleAge).
//
// The content-addressed cache (Cache) keeps files at <dir>/<sha256>/<name>.
// Concurrent writers, goroutines or processes, of one cache path are fine by
// construction: they write identical bytes, the first hard link wins, and the
// others find the winner's file and use it.
package extract
