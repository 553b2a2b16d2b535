package led

import (
	"errors"
	"fmt"
	"strings"

	"github.com/warthog618/go-gpiocdev"
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
	c, err := openChip(chip)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	off, err := findLine(c, name, offset)
	if err != nil {
		return nil, err
	}
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

// openChip opens a chip by device name or path, or else by label.
func openChip(chip string) (*gpiocdev.Chip, error) {
	c, err := gpiocdev.NewChip(chip)
	if err == nil {
		return c, nil
	}
	if !strings.Contains(chip, "/") {
		for _, name := range gpiocdev.Chips() {
			cc, err := gpiocdev.NewChip(name)
			if err != nil {
				continue
			}
			if cc.Label == chip {
				return cc, nil
			}
			cc.Close()
		}
	}
	return nil, fmt.Errorf("led: GPIO chip %q: %w", chip, err)
}

// findLine returns the offset of the named line, or offset when name is
// empty or the chip names none of its lines.
func findLine(c *gpiocdev.Chip, name string, offset int) (int, error) {
	if name != "" {
		off, err := c.FindLine(name)
		if err == nil {
			return off, nil
		}
		if !errors.Is(err, gpiocdev.ErrNotFound) {
			return 0, fmt.Errorf("led: %s line %q: %w", c.Name, name, err)
		}
		if offset < 0 || chipNamesLines(c) {
			return 0, fmt.Errorf("led: %s (%s) has no line named %q", c.Name, c.Label, name)
		}
	}
	if offset < 0 || offset >= c.Lines() {
		return 0, fmt.Errorf("led: %s (%s) has no line %d (it has %d)", c.Name, c.Label, offset, c.Lines())
	}
	return offset, nil
}

func chipNamesLines(c *gpiocdev.Chip) bool {
	for o := range c.Lines() {
		if info, err := c.LineInfo(o); err == nil && info.Name != "" {
			return true
		}
	}
	return false
}
