//go:build !linux

package led

import "errors"

// GPIO is an LED on a GPIO line; GPIO lines exist only on Linux.
type GPIO struct{}

// OpenGPIO returns an error: the GPIO character device is Linux only.
func OpenGPIO(chip, name string, offset int, activeLow bool) (*GPIO, error) {
	return nil, errors.New("led: GPIO lines are not supported on this OS")
}

// Set implements LED.
func (*GPIO) Set(bool) error { return errors.New("led: not supported") }

// Close implements LED.
func (*GPIO) Close() error { return nil }
