//go:build !linux

package button

import (
	"errors"
	"time"

	"github.com/pairguard/pairguard/board"
)

var errNotSupported = errors.New("button: GPIO lines are not supported on this OS")

// GPIO is a button on a GPIO line; GPIO lines exist only on Linux.
type GPIO struct{}

// Now returns a monotonic time; Event times come only from Linux.
func Now() time.Duration { return time.Duration(time.Now().UnixNano()) }

// Open returns an error: the GPIO character device is Linux only.
func Open(b board.Button) (*GPIO, error) {
	if b.Input.Kind == board.OutputNone {
		return nil, ErrNotFitted
	}
	return nil, errNotSupported
}

// OpenGPIO returns an error: the GPIO character device is Linux only.
func OpenGPIO(chip, name string, offset int, activeLow bool, bias board.Bias, debounce time.Duration) (*GPIO, error) {
	return nil, errNotSupported
}

// Events implements Button.
func (*GPIO) Events() <-chan Event { return nil }

// Close implements Button.
func (*GPIO) Close() error { return nil }
