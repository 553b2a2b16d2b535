//go:build !linux

package watchdog

import (
	"errors"
	"time"
)

// Device is a watchdog device; only Linux has them here.
type Device struct{}

// Open returns an error: the watchdog API is Linux only.
func Open(path string, timeout time.Duration) (*Device, error) {
	return nil, errors.New("watchdog: not supported on this OS")
}

// Timeout returns 0.
func (*Device) Timeout() time.Duration { return 0 }

// Identity returns "".
func (*Device) Identity() string { return "" }

// Feed implements Watchdog.
func (*Device) Feed() error { return errors.New("watchdog: not supported on this OS") }

// Close implements Watchdog.
func (*Device) Close() error { return nil }
