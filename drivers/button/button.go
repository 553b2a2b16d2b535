// Package button reads the front-panel push button: a GPIO input line with
// edge events on both edges and the kernel's debounce, through the GPIO
// character device (warthog618/go-gpiocdev).
//
// The meaning of a press (acknowledge, sync, swap, approve) is decided by
// firmware/panel's Decoder, fed with the Events of this package. A missing
// or busy line is an error from Open; the daemon logs it as a warning and
// runs without the button.
package button

import (
	"errors"
	"time"
)

// Event is one debounced edge.
type Event struct {
	Pressed bool          // true: the button went down; false: it came up
	Time    time.Duration // on the clock of Now (CLOCK_MONOTONIC)
}

// Button is a source of button events.
type Button interface {
	// Events delivers the edges in order. It is closed by Close.
	Events() <-chan Event
	// Close releases the line and closes Events.
	Close() error
}

// ErrNotFitted is returned by Open for a board without a button.
var ErrNotFitted = errors.New("button: not fitted")

// Consumer is the consumer label of the button's line (gpioinfo shows it).
const Consumer = "pairguard-button"

// queue is the number of events buffered for a slow reader; when it is
// full, further edges are dropped (the Decoder copes with a lost edge).
const queue = 32
