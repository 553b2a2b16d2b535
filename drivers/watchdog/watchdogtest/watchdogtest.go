// Package watchdogtest is an in-memory watchdog for tests of the daemon's
// self-fencing: it records feeds on the (fake, under synctest) clock and
// tells whether the board would have been reset.
package watchdogtest

import (
	"errors"
	"sync"
	"time"
)

// Watchdog is a fake watchdog.Watchdog.
type Watchdog struct {
	mu       sync.Mutex
	timeout  time.Duration
	lastFeed time.Time
	feeds    int
	closed   bool
	fired    bool
	err      error
}

// ErrClosed is returned by Feed after Close.
var ErrClosed = errors.New("watchdogtest: closed")

// New returns a watchdog armed now with the given timeout.
func New(timeout time.Duration) *Watchdog {
	return &Watchdog{timeout: timeout, lastFeed: time.Now()}
}

// Feed restarts the countdown, unless the watchdog already fired.
func (w *Watchdog) Feed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.check(time.Now())
	switch {
	case w.closed:
		return ErrClosed
	case w.err != nil:
		return w.err
	}
	if !w.fired {
		w.lastFeed = time.Now()
	}
	w.feeds++
	return nil
}

// Close disarms the watchdog (a magic close), unless it already fired.
func (w *Watchdog) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.check(time.Now())
	w.closed = true
	return nil
}

// Fail makes Feed return err (nil: work again).
func (w *Watchdog) Fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.err = err
}

// Fired reports whether the board would have been reset: at some point
// more than the timeout passed without a feed while armed.
func (w *Watchdog) Fired() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.check(time.Now())
	return w.fired
}

// Feeds returns the number of successful feeds.
func (w *Watchdog) Feeds() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.feeds
}

// Closed reports whether the watchdog was disarmed by Close.
func (w *Watchdog) Closed() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.closed
}

func (w *Watchdog) check(now time.Time) {
	if !w.closed && now.Sub(w.lastFeed) > w.timeout {
		w.fired = true
	}
}
