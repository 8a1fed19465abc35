package tail

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
)

// Only the last n lines are kept, in order, and everything is passed on.
func TestLast(t *testing.T) {
	var all bytes.Buffer
	l := New(3, &all)
	for i := range 10 {
		if n, err := fmt.Fprintf(l, "line %d\r\n", i); n != 8 || err != nil {
			t.Fatalf("Write returned %d, %v", n, err)
		}
	}
	l.Write([]byte("partial"))
	want := []string{"line 7", "line 8", "line 9", "partial"}
	if got := l.Lines(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if got := l.String(); got != "line 7\nline 8\nline 9\npartial" {
		t.Fatalf("String %q", got)
	}
	if !strings.HasPrefix(all.String(), "line 0\r\n") || !strings.HasSuffix(all.String(), "partial") {
		t.Fatalf("forwarded %q", all.String())
	}
}

// A line without end keeps its start and its end, within MaxLineLen.
func TestLongLine(t *testing.T) {
	l := New(2, nil)
	l.Write([]byte("start"))
	for range 1000 {
		l.Write(bytes.Repeat([]byte("x"), 1000))
	}
	l.Write([]byte("end\nnext\n"))
	got := l.Lines()
	if len(got) != 2 || got[1] != "next" {
		t.Fatalf("lines %q", got)
	}
	if !strings.HasPrefix(got[0], "startxx") || !strings.HasSuffix(got[0], "xxend") || !strings.Contains(got[0], "…") || len(got[0]) > MaxLineLen+len("…") {
		t.Fatalf("long line kept as %d bytes: %.40q…", len(got[0]), got[0])
	}
}

// Writers and readers at once (run with -race).
func TestConcurrent(t *testing.T) {
	l := New(10, nil)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for i := range 1000 {
				fmt.Fprintf(l, "%d\n", i)
				_ = l.String()
			}
		})
	}
	wg.Wait()
	if n := len(l.Lines()); n != 10 {
		t.Fatalf("%d lines kept, want 10", n)
	}
}
