// Package panel is the front panel's logic: which LED shows what for each
// engine state, how a blink pattern looks at a given time, what a button
// press of a given length means, and the one ticker that renders it all.
//
// The pattern function (Patterns), the level function (Level) and the press
// decoder (Decoder) are pure: no clocks, no goroutines. Renderer is the only
// part with a ticker; it sets LEDs through the small Output interface, which
// drivers/led's LEDs satisfy, so this package never imports drivers.
//
// # The role LED
//
// Checked from the top; the first match wins.
//
//	condition                                          colour  pattern
//	Fault, or role fault                               red     solid
//	Alarm (unacknowledged)                             red     fast blink
//	role starting                                      amber   fast blink
//	role standalone                                    green   solid
//	role primary or secondary, peer up, mirror syncing amber   slow blink
//	role primary, peer up, mirror in-sync or behind    green   solid
//	role primary, otherwise (peer missing)             green   slow blink
//	role secondary, peer up, mirror in-sync or behind  amber   solid
//	role secondary, peer up, mirror off or connecting  amber   slow blink
//	role secondary, otherwise (no primary to follow)   red     slow blink
//	no state yet (invalid role)                        off
//
// The failover LED is solid while FailoverLit (after a takeover, until
// acknowledged) and off otherwise. While the button is held it gives the
// user feedback instead (State.Held): slow blink once a release would start
// a sync, fast blink once it would swap.
//
// Decisions beyond the product rules: fault outranks an alarm (a node that
// cannot serve shows solid red even while an alarm is unacknowledged);
// "behind" (async replication lagging by a few blocks) counts as in sync,
// so that a busy async pair does not flicker; syncing shows amber on both
// nodes, since the pair is not redundant until it ends; an acknowledged
// split brain falls back to the role display (green slow blink on the
// primary, red slow blink on the secondary).
//
// Slow blink is 1 Hz (500 ms on, 500 ms off), fast blink 5 Hz (100 ms on,
// 100 ms off); both are multiples of the renderer's 50 ms tick. On a
// red/green bicolour LED amber is both on.
package panel

//go:generate go tool stringer -type=Colour,Pattern,Channel,Action -linecomment -output=names_string.go

import (
	"fmt"
	"time"

	"github.com/pairguard/pairguard/firmware/engine"
)

// State is what the front panel shows: the parts of the engine's state that
// matter to it.
type State struct {
	Role        engine.Role
	Peer        engine.PeerState
	Mirror      engine.MirrorState
	Alarm       bool // an unacknowledged alarm is active
	Fault       bool // the node cannot serve (also implied by RoleFault)
	FailoverLit bool // a takeover happened and is not yet acknowledged
	// Held is what releasing the held button would do (Decoder.Pending);
	// the zero value and ActionNone show nothing.
	Held Action
	// Pairing is the teach-in: the zero value (a provisioned or paired
	// node) shows nothing.
	Pairing Pairing
}

// Pairing is what the front panel shows of the teach-in.
type Pairing uint8

// The teach-in states the panel shows.
const (
	// PairingNone: no teach-in under way (provisioned pair key, or paired).
	PairingNone Pairing = iota
	// PairingUnpaired: the node waits to be taught in: the failover LED
	// blinks slowly.
	PairingUnpaired
	// PairingOpen: a window, a join or an approval is open: the role LED
	// blinks green fast (a short press approves), the failover LED too.
	PairingOpen
)

// Colour is a colour of the role LED.
type Colour uint8

// Colours. ColourOff is a valid colour (the LED is dark).
const (
	colourInvalid Colour = iota // invalid
	ColourOff                   // off
	ColourRed                   // red
	ColourGreen                 // green
	ColourAmber                 // amber
)

// Pattern is how an LED lights over time.
type Pattern uint8

// Patterns.
const (
	patternInvalid Pattern = iota // invalid
	Off                           // off
	Solid                         // solid
	SlowBlink                     // slow-blink
	FastBlink                     // fast-blink
)

// Blink timings: half periods, on then off.
const (
	SlowHalf = 500 * time.Millisecond
	FastHalf = 100 * time.Millisecond
)

// Level reports whether an LED showing p is lit at time t, measured from
// any fixed origin (the renderer uses its start). Blinks start with the on
// half at t = 0.
func Level(p Pattern, t time.Duration) bool {
	var half time.Duration
	switch p {
	case Solid:
		return true
	case SlowBlink:
		half = SlowHalf
	case FastBlink:
		half = FastHalf
	default:
		return false
	}
	r := t % (2 * half)
	if r < 0 {
		r += 2 * half
	}
	return r < half
}

// Light is the role LED's display: a colour and a pattern.
type Light struct {
	Colour  Colour
	Pattern Pattern
}

func (l Light) String() string {
	if l.Colour == ColourOff || l.Pattern == Off {
		return "off"
	}
	return l.Colour.String() + " " + l.Pattern.String()
}

// Display is what the front panel's logical LEDs show.
type Display struct {
	Role     Light
	Failover Pattern
}

// Patterns returns what the front panel shows in state s. It is the table
// in the package doc.
func Patterns(s State) Display {
	d := Display{Role: role(s), Failover: Off}
	if s.Pairing == PairingOpen && s.Role.Valid() && !s.Fault && s.Role != engine.RoleFault {
		d.Role = Light{ColourGreen, FastBlink}
	}
	switch {
	case s.Held == ActionSync:
		d.Failover = SlowBlink
	case s.Held == ActionSwap:
		d.Failover = FastBlink
	case s.FailoverLit:
		d.Failover = Solid
	case s.Pairing == PairingOpen:
		d.Failover = FastBlink
	case s.Pairing == PairingUnpaired:
		d.Failover = SlowBlink
	}
	return d
}

func role(s State) Light {
	inSync := s.Peer == engine.PeerUp && (s.Mirror == engine.MirrorInSync || s.Mirror == engine.MirrorBehind)
	switch {
	case !s.Role.Valid():
		return Light{ColourOff, Off}
	case s.Fault || s.Role == engine.RoleFault:
		return Light{ColourRed, Solid}
	case s.Alarm:
		return Light{ColourRed, FastBlink}
	case s.Role == engine.RoleStarting:
		return Light{ColourAmber, FastBlink}
	case s.Role == engine.RoleStandalone:
		return Light{ColourGreen, Solid}
	case s.Mirror == engine.MirrorSyncing && s.Peer == engine.PeerUp:
		return Light{ColourAmber, SlowBlink}
	case s.Role == engine.RolePrimary && inSync:
		return Light{ColourGreen, Solid}
	case s.Role == engine.RolePrimary:
		return Light{ColourGreen, SlowBlink}
	case s.Role == engine.RoleSecondary && inSync:
		return Light{ColourAmber, Solid}
	case s.Role == engine.RoleSecondary && s.Peer == engine.PeerUp &&
		(s.Mirror == engine.MirrorOff || s.Mirror == engine.MirrorConnecting):
		return Light{ColourAmber, SlowBlink}
	case s.Role == engine.RoleSecondary:
		return Light{ColourRed, SlowBlink}
	}
	panic(fmt.Sprintf("panel: no display for role %v", s.Role))
}

// Channel is one physical output of the front panel.
type Channel uint8

// Channels. ChannelRoleAmber exists on boards with a separate amber LED.
const (
	channelInvalid   Channel = iota // invalid
	ChannelRoleRed                  // role-red
	ChannelRoleGreen                // role-green
	ChannelRoleAmber                // role-amber
	ChannelFailover                 // failover
	numChannels
)

// Channels returns every channel, in walk-test order.
func Channels() []Channel {
	return []Channel{ChannelRoleRed, ChannelRoleGreen, ChannelRoleAmber, ChannelFailover}
}

// Channels returns the pattern of each physical output for d. With
// separateAmber false (a red/green bicolour LED), amber drives red and green
// together with the same pattern; with it true, amber drives only the amber
// LED. Channels not lit are Off.
func (d Display) Channels(separateAmber bool) map[Channel]Pattern {
	m := map[Channel]Pattern{
		ChannelRoleRed:   Off,
		ChannelRoleGreen: Off,
		ChannelRoleAmber: Off,
		ChannelFailover:  d.Failover,
	}
	p := d.Role.Pattern
	switch d.Role.Colour {
	case ColourRed:
		m[ChannelRoleRed] = p
	case ColourGreen:
		m[ChannelRoleGreen] = p
	case ColourAmber:
		if separateAmber {
			m[ChannelRoleAmber] = p
		} else {
			m[ChannelRoleRed], m[ChannelRoleGreen] = p, p
		}
	}
	return m
}
