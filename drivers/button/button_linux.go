package button

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/warthog618/go-gpiocdev"

	"github.com/pairguard/pairguard/drivers/internal/gpioline"
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
	c, off, err := gpioline.Find(chip, name, offset)
	if err != nil {
		return nil, fmt.Errorf("button: %w", err)
	}
	defer c.Close()
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
