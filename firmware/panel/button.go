package panel

import (
	"fmt"
	"time"
)

// Action is what a button press asks for.
type Action uint8

// Actions. ActionNone is a press that means nothing (or no press at all).
const (
	actionInvalid Action = iota // invalid
	ActionNone                  // none
	// ActionAcknowledge: a short press acknowledges alarms and the
	// failover LED.
	ActionAcknowledge // acknowledge
	// ActionSync: held SyncHold, starts a sync.
	ActionSync // sync
	// ActionSwap: held SwapHold, planned handover.
	ActionSwap // swap
	// ActionApprove: a short press in a pairing window approves the peer.
	ActionApprove // approve
)

// Timing holds the press lengths the decoder tells apart.
type Timing struct {
	Short      time.Duration // a press shorter than this is a click
	SyncHold   time.Duration // released after at least this: sync
	SwapHold   time.Duration // released after at least this: swap
	StuckAfter time.Duration // held at least this: stuck or leaned on, ignored
}

// DefaultTiming is the timing the daemon uses.
var DefaultTiming = Timing{
	Short:      time.Second,
	SyncHold:   3 * time.Second,
	SwapHold:   8 * time.Second,
	StuckAfter: 20 * time.Second,
}

// Validate checks that the lengths are positive and increasing.
func (t Timing) Validate() error {
	if t.Short <= 0 || t.Short > t.SyncHold || t.SyncHold >= t.SwapHold || t.SwapHold >= t.StuckAfter {
		return fmt.Errorf("panel: button timing must satisfy 0 < short (%v) <= sync (%v) < swap (%v) < stuck (%v)",
			t.Short, t.SyncHold, t.SwapHold, t.StuckAfter)
	}
	return nil
}

// Decoder turns the button's edges into actions. It is pure: the caller
// passes each edge with its time (any monotonic clock, the same for all
// edges), and Pending with the current time on that clock.
//
// Every action fires on release, so that nothing happens twice and a
// stuck button does nothing:
//
//	held for          released: action
//	< Short           Acknowledge (Approve while a pairing window is open)
//	Short..SyncHold   nothing, a hold given up (Approve in a pairing window)
//	SyncHold..Swap    Sync
//	SwapHold..Stuck   Swap
//	>= StuckAfter     nothing (stuck button, or leaned on)
//
// While the button is held, Pending tells what a release would do; the
// daemon puts it into State.Held, and Patterns blinks the failover LED
// slowly once a release would sync and fast once it would swap, so the
// user knows when to let go.
//
// A press without a release before it (a lost edge) restarts the press; a
// release without a press is ignored.
type Decoder struct {
	timing  Timing
	down    bool
	since   time.Duration
	pairing bool
}

// NewDecoder returns a decoder with the given timing; it panics if the
// timing is invalid (it is a constant of the daemon, not user input).
func NewDecoder(t Timing) *Decoder {
	if err := t.Validate(); err != nil {
		panic(err)
	}
	return &Decoder{timing: t}
}

// SetPairing opens or closes the pairing window: while open, any press
// released before SyncHold approves the peer instead of acknowledging.
func (d *Decoder) SetPairing(open bool) { d.pairing = open }

// Edge feeds one edge: pressed true when the button went down, false when
// it came up, at time t. It returns the action the press completes.
func (d *Decoder) Edge(pressed bool, t time.Duration) Action {
	if pressed {
		d.down, d.since = true, t
		return ActionNone
	}
	if !d.down {
		return ActionNone
	}
	d.down = false
	return d.decide(t - d.since)
}

// Pending returns what releasing the button at now would do, or ActionNone
// when the button is up.
func (d *Decoder) Pending(now time.Duration) Action {
	if !d.down {
		return ActionNone
	}
	return d.decide(now - d.since)
}

// Held reports whether the button is down.
func (d *Decoder) Held() bool { return d.down }

func (d *Decoder) decide(held time.Duration) Action {
	t := d.timing
	switch {
	case held < 0:
		return ActionNone
	case held < t.SyncHold && d.pairing:
		return ActionApprove
	case held < t.Short:
		return ActionAcknowledge
	case held < t.SyncHold:
		return ActionNone
	case held < t.SwapHold:
		return ActionSync
	case held < t.StuckAfter:
		return ActionSwap
	}
	return ActionNone
}
