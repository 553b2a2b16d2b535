package button

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/warthog618/go-gpiocdev"
	"golang.org/x/sys/unix"

	"github.com/pairguard/pairguard/board"
)

// GPIO is a button on a GPIO input line.
type GPIO struct {
	line    *gpiocdev.Line
	events  chan Event
	dropped atomic.Uint64
	desc    string
}

// Now returns the current time on the clock of Event.Time: CLOCK_MONOTONIC,
// which the kernel uses for GPIO event timestamps since Linux 5.7. The
// daemon passes it to Decoder.Pending.
func Now() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(fmt.Sprintf("button: CLOCK_MONOTONIC: %v", err))
	}
	return time.Duration(ts.Nano())
}

// Open opens the button b describes.
func Open(b board.Button) (*GPIO, error) {
	switch b.Input.Kind {
	case board.OutputNone:
		return nil, ErrNotFitted
	case board.OutputGPIO:
		return OpenGPIO(b.Input.Chip, b.Input.Line, b.Input.Offset, b.ActiveLow, b.Bias, b.Debounce)
	}
	return nil, fmt.Errorf("button: %v is not a GPIO line", b.Input)
}

// OpenGPIO requests a line of chip as an input with events on both edges.
// chip, name and offset are found as led.OpenGPIO finds them. activeLow
// means a pressed button reads low; debounce > 0 asks the kernel to
// debounce (in hardware where the chip can, otherwise in gpiolib).
//
// If the button is already down when it is opened, the first event is a
// press stamped with the time of opening, so a button held at boot (or
// stuck) is seen as held.
func OpenGPIO(chip, name string, offset int, activeLow bool, bias board.Bias, debounce time.Duration) (*GPIO, error) {
	c, err := openChip(chip)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	off, err := findLine(c, name, offset)
	if err != nil {
		return nil, err
	}
	g := &GPIO{events: make(chan Event, queue), desc: fmt.Sprintf("%s:%d", c.Name, off)}
	opts := []gpiocdev.LineReqOption{
		gpiocdev.WithConsumer(Consumer),
		gpiocdev.AsInput,
		gpiocdev.WithBothEdges,
	}
	if activeLow {
		opts = append(opts, gpiocdev.AsActiveLow)
	}
	switch bias {
	case board.BiasDisabled:
		opts = append(opts, gpiocdev.WithBiasDisabled)
	case board.BiasPullUp:
		opts = append(opts, gpiocdev.WithPullUp)
	case board.BiasPullDown:
		opts = append(opts, gpiocdev.WithPullDown)
	}
	if debounce > 0 {
		opts = append(opts, gpiocdev.WithDebounce(debounce))
	}
	opts = append(opts, gpiocdev.WithEventHandler(g.handle))
	opened := Now()
	l, err := c.RequestLine(off, opts...)
	if err != nil {
		return nil, fmt.Errorf("button: request %s line %d: %w", c.Name, off, err)
	}
	g.line = l
	if v, err := l.Value(); err == nil && v == 1 {
		g.send(Event{Pressed: true, Time: opened})
	}
	return g, nil
}

func (g *GPIO) handle(e gpiocdev.LineEvent) {
	g.send(Event{Pressed: e.Type == gpiocdev.LineEventRisingEdge, Time: e.Timestamp})
}

func (g *GPIO) send(e Event) {
	select {
	case g.events <- e:
	default:
		g.dropped.Add(1)
	}
}

// Events implements Button.
func (g *GPIO) Events() <-chan Event { return g.events }

// Dropped returns the number of edges dropped because Events was full.
func (g *GPIO) Dropped() uint64 { return g.dropped.Load() }

// Close implements Button. It waits for the event handler to return.
func (g *GPIO) Close() error {
	err := g.line.Close()
	close(g.events)
	if err != nil {
		return fmt.Errorf("button: %s: %w", g.desc, err)
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
	return nil, fmt.Errorf("button: GPIO chip %q: %w", chip, err)
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
			return 0, fmt.Errorf("button: %s line %q: %w", c.Name, name, err)
		}
		if offset < 0 || chipNamesLines(c) {
			return 0, fmt.Errorf("button: %s (%s) has no line named %q", c.Name, c.Label, name)
		}
	}
	if offset < 0 || offset >= c.Lines() {
		return 0, fmt.Errorf("button: %s (%s) has no line %d (it has %d)", c.Name, c.Label, offset, c.Lines())
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
