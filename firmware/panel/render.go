package panel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Tick is the renderer's period. The blink half periods are multiples of it.
const Tick = 50 * time.Millisecond

// Output is one physical LED. drivers/led's LEDs and its ledtest fake
// satisfy it.
type Output interface {
	Set(on bool) error
}

// Outputs maps each fitted channel to its LED. A channel that is absent (or
// nil) is not fitted, or failed to open: the panel runs without it.
type Outputs map[Channel]Output

// separateAmber reports whether the role LED has its own amber output.
func (o Outputs) separateAmber() bool { return o[ChannelRoleAmber] != nil }

// Renderer drives the front panel: one ticker, every Tick it asks for the
// current State, computes the Display with Patterns and each output's level
// with Level, and calls Set only on outputs whose level changed.
type Renderer struct {
	outs  Outputs
	state func() State
	log   *slog.Logger
	walk  chan walkRequest
	done  chan struct{}
}

type walkRequest struct {
	ctx   context.Context
	step  time.Duration
	reply chan error
}

// NewRenderer returns a renderer for outs. state is called from Run's
// goroutine once per tick and must be safe for that (typically it reads a
// copy the daemon loop publishes under a mutex or an atomic.Pointer).
func NewRenderer(outs Outputs, state func() State, log *slog.Logger) *Renderer {
	return &Renderer{
		outs:  outs,
		state: state,
		log:   log,
		walk:  make(chan walkRequest),
		done:  make(chan struct{}),
	}
}

// Run renders until ctx is done, then turns every LED off and returns nil.
// Errors setting an LED are logged (at Warn, once until it works again),
// never fatal. Run must be called once.
func (r *Renderer) Run(ctx context.Context) error {
	defer close(r.done)
	start := time.Now()
	ticker := time.NewTicker(Tick)
	defer ticker.Stop()

	last := make(map[Channel]bool)   // level last set; absent: unknown
	failed := make(map[Channel]bool) // the last Set failed
	set := func(ch Channel, on bool) {
		if l, ok := last[ch]; ok && l == on {
			return
		}
		last[ch] = on
		err := r.outs[ch].Set(on)
		switch {
		case err != nil && !failed[ch]:
			failed[ch] = true
			r.log.Warn("panel: cannot set LED; carrying on", "led", ch.String(), "err", err)
		case err == nil && failed[ch]:
			failed[ch] = false
			r.log.Info("panel: LED works again", "led", ch.String())
		}
	}
	render := func(now time.Time) {
		pats := Patterns(r.state()).Channels(r.outs.separateAmber())
		t := now.Sub(start)
		for _, ch := range Channels() {
			if r.outs[ch] != nil {
				set(ch, Level(pats[ch], t))
			}
		}
	}

	render(start)
	for {
		select {
		case <-ctx.Done():
			for _, ch := range Channels() {
				if r.outs[ch] != nil {
					set(ch, false)
				}
			}
			return nil
		case now := <-ticker.C:
			render(now)
		case req := <-r.walk:
			req.reply <- WalkTest(req.ctx, r.outs, req.step)
			clear(last) // the walk left the LEDs off; set them all again
			render(time.Now())
		}
	}
}

// WalkTest runs WalkTest on the renderer's outputs between two ticks, so the
// walk and the normal display never fight over an LED, and then resumes the
// normal display. It returns an error if Run has ended or is not running
// when ctx is done.
func (r *Renderer) WalkTest(ctx context.Context, step time.Duration) error {
	req := walkRequest{ctx: ctx, step: step, reply: make(chan error, 1)}
	select {
	case r.walk <- req:
	case <-r.done:
		return errors.New("panel: renderer stopped")
	case <-ctx.Done():
		return ctx.Err()
	}
	return <-req.reply
}

// WalkTest lights every fitted LED and colour in turn, each for step, so an
// operator (or the QEMU harness reading pl061 traces) can check the wiring:
// role red, role green, role amber (the amber LED, or red and green
// together on a bicolour LED), failover, then all together, then all off.
// It returns the errors of the Sets that failed, joined and naming the LED,
// or ctx.Err() if ctx ends first (the LEDs are left off either way).
func WalkTest(ctx context.Context, outs Outputs, step time.Duration) error {
	errs := make(map[Channel]error) // the first error of each LED
	setAll := func(lit ...Channel) {
		for _, ch := range Channels() {
			if outs[ch] == nil {
				continue
			}
			on := false
			for _, l := range lit {
				on = on || l == ch
			}
			if err := outs[ch].Set(on); err != nil && errs[ch] == nil {
				errs[ch] = fmt.Errorf("panel: LED %s: %w", ch, err)
			}
		}
	}
	wait := func() bool {
		t := time.NewTimer(step)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}

	steps := [][]Channel{{ChannelRoleRed}, {ChannelRoleGreen}}
	switch {
	case outs.separateAmber():
		steps = append(steps, []Channel{ChannelRoleAmber})
	case outs[ChannelRoleRed] != nil && outs[ChannelRoleGreen] != nil:
		steps = append(steps, []Channel{ChannelRoleRed, ChannelRoleGreen})
	}
	steps = append(steps, []Channel{ChannelFailover}, Channels())
	for _, lit := range steps {
		fitted := false
		for _, ch := range lit {
			fitted = fitted || outs[ch] != nil
		}
		if !fitted {
			continue
		}
		setAll(lit...)
		if !wait() {
			setAll()
			return ctx.Err()
		}
	}
	setAll()
	var all []error
	for _, ch := range Channels() {
		all = append(all, errs[ch])
	}
	return errors.Join(all...)
}
