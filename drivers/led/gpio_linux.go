package led

import (
	"fmt"

	"github.com/warthog618/go-gpiocdev"

	"github.com/pairguard/pairguard/drivers/internal/gpioline"
)

// GPIO is an LED on a GPIO line, requested as an output.
type GPIO struct {
	line *gpiocdev.Line
	desc string
}

// OpenGPIO requests a line of chip as an output, initially off. chip is a
// device name ("gpiochip0"), a path or a chip label ("9030000.pl061").
// The line is found by name when name is not empty and the chip names its
// lines; offset (>= 0) is used when name is empty or the chip names none of
// its lines. activeLow makes on drive the line low.
func OpenGPIO(chip, name string, offset int, activeLow bool) (*GPIO, error) {
	c, off, err := gpioline.Find(chip, name, offset)
	if err != nil {
		return nil, fmt.Errorf("led: %w", err)
	}
	defer c.Close()
	level := gpiocdev.AsActiveHigh
	if activeLow {
		level = gpiocdev.AsActiveLow
	}
	l, err := c.RequestLine(off, gpiocdev.WithConsumer(Consumer), level, gpiocdev.AsOutput(0))
	if err != nil {
		return nil, fmt.Errorf("led: request %s line %d: %w", c.Name, off, err)
	}
	return &GPIO{line: l, desc: fmt.Sprintf("%s:%d", c.Name, off)}, nil
}

// Set implements LED.
func (g *GPIO) Set(on bool) error {
	v := 0
	if on {
		v = 1
	}
	if err := g.line.SetValue(v); err != nil {
		return fmt.Errorf("led: %s: %w", g.desc, err)
	}
	return nil
}

// Close implements LED.
func (g *GPIO) Close() error {
	if err := g.line.Close(); err != nil {
		return fmt.Errorf("led: %s: %w", g.desc, err)
	}
	return nil
}

func (g *GPIO) String() string { return g.desc }
