// Package buttontest is an in-memory button for tests of code that reads
// button events: the test presses and releases it at times it chooses.
package buttontest

import (
	"sync"
	"time"

	"github.com/pairguard/pairguard/drivers/button"
)

// Button is a fake button.Button.
type Button struct {
	mu     sync.Mutex
	events chan button.Event
	closed bool
}

// New returns a button whose Events buffers up to 64 edges.
func New() *Button { return &Button{events: make(chan button.Event, 64)} }

// Press sends a press at t. It blocks while the buffer is full and does
// nothing after Close.
func (b *Button) Press(t time.Duration) { b.send(button.Event{Pressed: true, Time: t}) }

// Release sends a release at t.
func (b *Button) Release(t time.Duration) { b.send(button.Event{Pressed: false, Time: t}) }

// Click sends a press at t and a release after held.
func (b *Button) Click(t, held time.Duration) {
	b.Press(t)
	b.Release(t + held)
}

func (b *Button) send(e button.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.closed {
		b.events <- e
	}
}

// Events implements button.Button.
func (b *Button) Events() <-chan button.Event { return b.events }

// Close implements button.Button.
func (b *Button) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.closed {
		b.closed = true
		close(b.events)
	}
	return nil
}
