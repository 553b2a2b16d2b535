// Package gpioline finds a GPIO line for the LED and button drivers: a chip
// by device name, path or label, and a line by name or offset.
package gpioline

import (
	"errors"
	"fmt"
	"strings"

	"github.com/warthog618/go-gpiocdev"
)

// Find opens chip (a device name such as "gpiochip0", a path, or a chip
// label such as "9030000.pl061") and returns it with the offset of the line:
// the line named name when the chip names its lines, else offset (>= 0).
// The caller closes the chip.
func Find(chip, name string, offset int) (*gpiocdev.Chip, int, error) {
	c, err := openChip(chip)
	if err != nil {
		return nil, 0, err
	}
	off, err := findLine(c, name, offset)
	if err != nil {
		c.Close()
		return nil, 0, err
	}
	return c, off, nil
}

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
	return nil, fmt.Errorf("GPIO chip %q: %w", chip, err)
}

func findLine(c *gpiocdev.Chip, name string, offset int) (int, error) {
	if name != "" {
		off, err := c.FindLine(name)
		if err == nil {
			return off, nil
		}
		if !errors.Is(err, gpiocdev.ErrNotFound) {
			return 0, fmt.Errorf("%s line %q: %w", c.Name, name, err)
		}
		if offset < 0 || chipNamesLines(c) {
			return 0, fmt.Errorf("%s (%s) has no line named %q", c.Name, c.Label, name)
		}
	}
	if offset < 0 || offset >= c.Lines() {
		return 0, fmt.Errorf("%s (%s) has no line %d (it has %d)", c.Name, c.Label, offset, c.Lines())
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
