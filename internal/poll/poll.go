// Package poll is the one way this module waits for a condition it cannot
// be told about: try, wait, try again, with a cadence that backs off and a
// deadline that the caller's context carries. Every error says what was
// being waited for.
package poll

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Backoff is a retry cadence: the first wait is Initial, each next one
// twice the last, never more than Max. The zero Backoff waits 1 ms, then
// doubles up to 1 s.
type Backoff struct {
	Initial, Max time.Duration

	next time.Duration
}

// Next returns the wait before the next attempt and advances the cadence.
func (b *Backoff) Next() time.Duration {
	initial, limit := b.Initial, b.Max
	if initial <= 0 {
		initial = time.Millisecond
	}
	if limit <= 0 {
		limit = time.Second
	}
	limit = max(limit, initial)
	if b.next <= 0 {
		b.next = initial
	}
	d := b.next
	b.next = min(2*b.next, limit)
	return d
}

// Reset starts the cadence again from Initial.
func (b *Backoff) Reset() { b.next = 0 }

// Common cadences. Files and sockets that appear within milliseconds of a
// process starting are polled fast at first; a peer that is booting is
// retried more gently.
var (
	// Fast is for local events on a boot's critical path: a socket file
	// appearing, a process listening. A stat or a connect every 5 ms costs
	// nothing; a longer cap would add its overshoot to every boot.
	Fast = Backoff{Initial: time.Millisecond, Max: 5 * time.Millisecond}
	// Peer is for a remote end that may still be booting.
	Peer = Backoff{Initial: 10 * time.Millisecond, Max: time.Second}
)

// Stop wraps err so that [Until] returns it at once instead of retrying.
func Stop(err error) error {
	if err == nil {
		return nil
	}
	return &stopError{err}
}

type stopError struct{ err error }

func (e *stopError) Error() string { return e.err.Error() }
func (e *stopError) Unwrap() error { return e.err }

// Error is what [Until] returns when ctx ends before the condition holds.
// It matches the context's error (and cause) with errors.Is, and the
// last attempt's error too.
type Error struct {
	What    string        // what was waited for, as "the QMP socket /run/x"
	Elapsed time.Duration // how long it was waited for
	Err     error         // context.Cause of the context that ended the wait
	Last    error         // the last attempt's error, if any
}

func (e *Error) Error() string {
	s := fmt.Sprintf("waited %s for %s: %v", e.Elapsed.Round(time.Millisecond), e.What, e.Err)
	if e.Last != nil {
		s += fmt.Sprintf(" (last attempt: %v)", e.Last)
	}
	return s
}

func (e *Error) Unwrap() []error {
	if e.Last == nil {
		return []error{e.Err}
	}
	return []error{e.Err, e.Last}
}

// Until calls try until it reports done, or returns an error wrapped by
// [Stop], or ctx ends; between attempts it waits as b says (b is copied,
// so one Backoff value can serve many waits). An error try returns
// without Stop means "not yet" and is kept as the reason to report. what
// names the awaited condition for the error. On ctx's end Until returns
// an [*Error]; a Stop error is returned unwrapped of its Stop marker.
func Until(ctx context.Context, b Backoff, what string, try func() (done bool, err error)) error {
	start := time.Now()
	b.Reset()
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	var last error
	for {
		done, err := try()
		if done {
			return nil
		}
		if se, ok := err.(*stopError); ok {
			return se.err
		}
		if err != nil {
			last = err
		}
		if ctx.Err() != nil {
			return &Error{What: what, Elapsed: time.Since(start), Err: context.Cause(ctx), Last: last}
		}
		d := b.Next()
		if timer == nil {
			timer = time.NewTimer(d)
		} else {
			timer.Reset(d)
		}
		select {
		case <-ctx.Done():
			// One last look: the condition may have come true meanwhile.
			if done, _ := try(); done {
				return nil
			}
			return &Error{What: what, Elapsed: time.Since(start), Err: context.Cause(ctx), Last: last}
		case <-timer.C:
		}
	}
}

// IsTimeout reports whether err is a wait that ran out of time (its
// context's deadline passed), as opposed to one cancelled.
func IsTimeout(err error) bool {
	var pe *Error
	return errors.As(err, &pe) && errors.Is(pe.Err, context.DeadlineExceeded)
}
