// Package ledtest is an in-memory LED that records a timeline of its
// changes, for tests of code that drives LEDs (firmware/panel's renderer).
package ledtest

import (
	"errors"
	"sync"
	"time"
)

// Change is one call to Set.
type Change struct {
	At time.Time // time.Now() at the call (a bubble's fake clock under synctest)
	On bool
}

// LED is a fake led.LED. The zero value is not usable; use New.
type LED struct {
	mu       sync.Mutex
	name     string
	timeline []Change
	on       bool
	closed   bool
	err      error
}

// ErrClosed is returned by Set after Close.
var ErrClosed = errors.New("ledtest: closed")

// New returns a dark LED called name.
func New(name string) *LED { return &LED{name: name} }

// Set records the change. It fails with the error given to Fail, if any.
func (l *LED) Set(on bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if l.err != nil {
		return l.err
	}
	l.on = on
	l.timeline = append(l.timeline, Change{At: time.Now(), On: on})
	return nil
}

// Close marks the LED closed.
func (l *LED) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	return nil
}

// Fail makes every later Set return err (nil: work again).
func (l *LED) Fail(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.err = err
}

// On reports the LED's current level.
func (l *LED) On() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.on
}

// Closed reports whether Close was called.
func (l *LED) Closed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// Timeline returns a copy of the changes so far.
func (l *LED) Timeline() []Change {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Change(nil), l.timeline...)
}

// Reset forgets the timeline.
func (l *LED) Reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.timeline = nil
}

func (l *LED) String() string { return l.name }
