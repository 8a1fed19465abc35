package agent

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"testing"
	"testing/iotest"
	"time"
)

// Output passes the ring intact whatever the sizes of frames and reads,
// wrapping around many times.
func TestOutputBufferKeepsOrder(t *testing.T) {
	data := make([]byte, 3<<20)
	for i := range data {
		data[i] = byte(rand.IntN(256))
	}
	b := newOutputBuffer()
	fillErr := make(chan error, 1)
	go func() {
		// Frames of random size, delivered by a source that hands out
		// one byte at a time now and then.
		src := io.MultiReader(iotest.HalfReader(bytes.NewReader(data[:1<<20])), bytes.NewReader(data[1<<20:]))
		left := len(data)
		for left > 0 {
			n := min(left, 1+rand.IntN(3*PipeSize))
			if err := b.fill(src, n); err != nil {
				fillErr <- err
				return
			}
			left -= n
		}
		b.closeWrite()
		fillErr <- nil
	}()
	var got bytes.Buffer
	buf := make([]byte, 3*PipeSize)
	for {
		n, err := b.Read(buf[:1+rand.IntN(len(buf))])
		got.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := <-fillErr; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), data) {
		t.Fatalf("got %d bytes, not the %d written in order", got.Len(), len(data))
	}
}

// A full buffer holds the filler back until it drops or is closed; it
// never holds more than PipeSize.
func TestOutputBufferBounds(t *testing.T) {
	b := newOutputBuffer()
	filled := make(chan error, 1)
	go func() { filled <- b.fill(bytes.NewReader(make([]byte, 3*PipeSize)), 3*PipeSize) }()
	select {
	case err := <-filled:
		t.Fatalf("fill of three buffers returned %v with no reader", err)
	case <-time.After(200 * time.Millisecond):
	}
	b.dropWhenFull()
	select {
	case err := <-filled:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("fill still waits after dropWhenFull")
	}
	b.closeWrite()
	n, err := io.Copy(io.Discard, b)
	if n != PipeSize || err != nil {
		t.Fatalf("read %d bytes, %v; want the %d that fit", n, err, PipeSize)
	}
	// After closeRead, reads fail and fills drop.
	b = newOutputBuffer()
	b.closeRead(os.ErrClosed)
	if err := b.fill(bytes.NewReader(make([]byte, 10)), 10); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Read(make([]byte, 1)); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Read after closeRead = %v", err)
	}
}

type shortW struct{}

func (shortW) Write(p []byte) (int, error) { return len(p) / 2, nil }

func TestOutputBufferShortWrite(t *testing.T) {
	b := newOutputBuffer()
	if err := b.fill(bytes.NewReader([]byte("hello")), 5); err != nil {
		t.Fatal(err)
	}
	b.closeWrite()
	if err := b.writeTo(shortW{}); err != io.ErrShortWrite {
		t.Fatalf("writeTo = %v, want io.ErrShortWrite", err)
	}
}
