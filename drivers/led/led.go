// Package led drives the front panel's LEDs: GPIO lines through the GPIO
// character device (warthog618/go-gpiocdev) and LED-class devices under
// /sys/class/leds (periph.io/x/host/v3/sysfs), both behind LED.
//
// Patterns and blinking are not here: firmware/panel renders them and calls
// Set only when the level changes. A missing or busy line is an error from
// Open; the daemon logs it as a warning and runs without that LED.
package led

import (
	"errors"
	"fmt"

	"github.com/pairguard/pairguard/board"
)

// LED is one on/off light.
type LED interface {
	// Set lights the LED (on) or darkens it.
	Set(on bool) error
	// Close releases the line or device. It does not change the LED.
	Close() error
}

// ErrNotFitted is returned by Open for an output the board does not have.
var ErrNotFitted = errors.New("led: not fitted")

// Consumer is the consumer label pairguard's GPIO lines carry (gpioinfo
// shows it).
const Consumer = "pairguard"

// Open opens the LED o describes, initially off.
func Open(o board.Output) (LED, error) {
	switch o.Kind {
	case board.OutputNone:
		return nil, ErrNotFitted
	case board.OutputGPIO:
		return OpenGPIO(o.Chip, o.Line, o.Offset, o.ActiveLow)
	case board.OutputSysfs:
		return OpenSysfs(o.LED)
	}
	return nil, fmt.Errorf("led: invalid output %v", o)
}
