package poll

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestBackoffDoublesToMax(t *testing.T) {
	b := Backoff{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond}
	var got []time.Duration
	for range 5 {
		got = append(got, b.Next())
	}
	want := []time.Duration{10, 20, 40, 50, 50}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatalf("cadence %v, want %v ms", got, want)
		}
	}
	b.Reset()
	if d := b.Next(); d != 10*time.Millisecond {
		t.Fatalf("after Reset: %v", d)
	}
	var zero Backoff
	if d := zero.Next(); d != time.Millisecond {
		t.Fatalf("zero Backoff first wait %v", d)
	}
}

func TestUntilDone(t *testing.T) {
	n := 0
	err := Until(context.Background(), Fast, "the third try", func() (bool, error) {
		n++
		return n == 3, errors.New("not yet")
	})
	if err != nil || n != 3 {
		t.Fatalf("err %v after %d tries", err, n)
	}
}

func TestUntilStop(t *testing.T) {
	fatal := errors.New("refused")
	n := 0
	err := Until(context.Background(), Fast, "x", func() (bool, error) {
		n++
		return false, Stop(fatal)
	})
	if err != fatal || n != 1 {
		t.Fatalf("err %v after %d tries, want the stop error at once", err, n)
	}
}

func TestUntilDeadlineNamesWhatAndLast(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	last := errors.New("connection refused")
	err := Until(ctx, Fast, "the agent socket /tmp/s", func() (bool, error) { return false, last })
	var pe *Error
	if !errors.As(err, &pe) {
		t.Fatalf("err %T %v, want *poll.Error", err, err)
	}
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, last) || !IsTimeout(err) {
		t.Fatalf("err %v does not match the deadline and the last error", err)
	}
	if !strings.Contains(err.Error(), "the agent socket /tmp/s") || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("err %q does not say what it waited for and why", err)
	}
	if pe.Elapsed < 30*time.Millisecond {
		t.Fatalf("gave up after %v, before the deadline", pe.Elapsed)
	}
}

func TestUntilCancelCause(t *testing.T) {
	ctx, cancel := context.WithCancelCause(context.Background())
	why := errors.New("QEMU exited")
	go func() { time.Sleep(10 * time.Millisecond); cancel(why) }()
	err := Until(ctx, Fast, "x", func() (bool, error) { return false, nil })
	if !errors.Is(err, why) || IsTimeout(err) {
		t.Fatalf("err %v, want the cancel cause and not a timeout", err)
	}
}
