package engine

import (
	"fmt"
	"time"
)

// Arbiter leases (README, "The arbiter").
//
// With an arbiter configured, a node that does not hear its peer becomes or
// stays primary only while it holds an unexpired lease from the arbiter,
// and it releases the address ReleaseMargin before the lease ends. A node
// that hears its peer runs as without an arbiter: a lost arbiter is then
// only the alarm arbiter-unreachable.
//
// The engine asks for a lease with the action WantLease and learns about it
// from LeaseChanged events; the daemon's lease client (firmware/arbiter)
// does the rest: it renews, measures the lease from the moment the request
// was sent on the daemon's monotonic clock (the engine's), and gives the
// lease back when it is no longer wanted. The engine wants a lease while
// it is primary (so that the arbiter always knows the holder and grants the
// other node only after that lease has run out), and while, eligible, it
// does not hear its peer (as secondary, or as starting in the last
// failover-time of connection-wait-time).
//
// A primary whose lease lapsed while it heard its peer (the arbiter was
// unreachable, or still gave the lease to the peer after a handover)
// steps down as soon as the peer falls silent; the other node starts
// asking only then, on its own peer-down, and the arbiter grants a node
// that starts asking on a free pair only after its decision window (250 ms
// by default, longer than a heartbeat interval), so the step-down comes
// first.

// AlarmArbiterLost: the arbiter does not answer a node that wants a lease.
const AlarmArbiterLost Alarm = "arbiter-unreachable"

// ArbiterConfig is the engine's part of `[arbiter]`.
type ArbiterConfig struct {
	// Enabled: `[arbiter] address` is set.
	Enabled bool
	// ReleaseMargin: how long before its lease ends a node without its
	// peer releases the address (default DefaultReleaseMargin).
	ReleaseMargin time.Duration
}

// DefaultReleaseMargin is the default of ArbiterConfig.ReleaseMargin (the
// same as the arbiter package's ReleaseMargin).
const DefaultReleaseMargin = 100 * time.Millisecond

func (c ArbiterConfig) validate(d Durations) error {
	if !c.Enabled {
		return nil
	}
	if c.ReleaseMargin <= 0 || c.ReleaseMargin >= d.FailoverTime {
		return fmt.Errorf("arbiter.release-margin: %v must be positive and under heartbeat.failover-time (%v)", c.ReleaseMargin, d.FailoverTime)
	}
	return nil
}

// LeaseState is what the arbiter last said about this node's lease.
type LeaseState uint8

const (
	leaseInvalid LeaseState = iota // invalid
	// LeaseGranted: the node holds a lease until LeaseChanged.Until.
	LeaseGranted // granted
	// LeaseDenied: the arbiter answered without granting (another node
	// holds, it is starting, it decides).
	LeaseDenied // denied
	// LeaseUnreachable: the arbiter did not answer for a while.
	LeaseUnreachable // unreachable
)

// LeaseChanged: the lease client reports an answer of the arbiter, or its
// silence. Until is the end of this node's lease on the engine's clock (0
// when it holds none); a denial never shortens a lease granted before.
type LeaseChanged struct {
	State  LeaseState
	Until  time.Duration
	Holder uint64 // the node the arbiter names as holder (0: nobody)
	Epoch  uint64 // the arbiter's epoch of that grant
	Reason string // why it was denied
	// HolderFor: with a denial, how long the holder's lease (and the
	// arbiter's margin) still runs, as the arbiter said.
	HolderFor time.Duration
}

func (LeaseChanged) isEvent() {}

// WantLease: start (or stop) asking the arbiter for a lease. Stopping gives
// a held lease back; when it follows a ReleaseAddress, the address is gone
// first.
type WantLease struct{ Want bool }

func (WantLease) isAction() {}

// ArbiterStatus is `status` `arbiter` {`state`, `holder`, `lease-ms`}.
type ArbiterStatus struct {
	// State: "off" (no arbiter), "idle" (no lease wanted), "asking" (no
	// answer yet), or the last answer: "granted" ("expired" once that
	// lease has run out), "denied", "unreachable".
	State   string
	Holder  uint64        // the holder the arbiter last named
	LeaseMS int64         // what is left of this node's lease
	Until   time.Duration // its end on the engine's clock (0: none)
}

type leaseState struct {
	want   bool
	state  LeaseState // 0 while asking without an answer
	until  time.Duration
	holder uint64
	epoch  uint64
	forced bool // primary by force: the operator overrides the arbiter too
	// peerEnd: when the peer's lease was to end by the first denial that
	// named it while it was unheard (0: none). A later end means the
	// peer renewed: it is alive, only unheard.
	peerEnd time.Duration
}

// stepLease handles LeaseChanged.
func (e *Engine) stepLease(ev LeaseChanged) {
	if !e.cfg.Arbiter.Enabled {
		return
	}
	l := &e.lease
	if !l.want {
		// A late answer to a request no longer wanted: the client gives
		// the lease back.
		return
	}
	prev := l.state
	l.state, l.holder, l.epoch = ev.State, ev.Holder, ev.Epoch
	if ev.State == LeaseGranted && ev.Until > l.until {
		l.until = ev.Until
	}
	switch ev.State {
	case LeaseUnreachable:
		e.raise(AlarmArbiterLost, "the arbiter does not answer")
	case LeaseGranted, LeaseDenied:
		e.clear(AlarmArbiterLost)
	default:
		panic(fmt.Sprintf("engine: lease state %s in role %s", ev.State, e.role))
	}
	if ev.State == LeaseDenied && ev.Holder != 0 && ev.Holder != e.cfg.NodeID && !e.peerAlive() {
		end := e.now + ev.HolderFor
		switch {
		case l.peerEnd == 0:
			l.peerEnd = end
		case end > l.peerEnd+e.cfg.Interval:
			// The peer renewed its lease since it fell silent: it is
			// alive, only unheard (a dead peer's lease just runs out).
			e.raise(AlarmFailoverLineDown, "peer unheard on both paths, but it renews its arbiter lease")
		}
	}
	if prev != ev.State {
		e.emit(Log{Kind: "arbiter", Message: fmt.Sprintf("lease %s (holder %016x, epoch %d%s)", ev.State, ev.Holder, ev.Epoch, reasonSuffix(ev.Reason))})
	}
}

func reasonSuffix(r string) string {
	if r == "" {
		return ""
	}
	return ", " + r
}

// leaseHeld reports whether the node holds a lease it may still use: one
// that ends more than the release margin from now.
func (e *Engine) leaseHeld() bool {
	return e.lease.until-e.cfg.Arbiter.ReleaseMargin > e.now
}

// leaseAllows is the arbiter's part of the guard before a claim by a node
// that does not hear its peer.
func (e *Engine) leaseAllows() bool {
	return !e.cfg.Arbiter.Enabled || e.leaseHeld()
}

// evalLease applies the lease rules after the role rules: a primary
// without its peer and without a lease steps down, and the wish for a
// lease follows the role and the peer.
func (e *Engine) evalLease() {
	l := &e.lease
	if e.role != RolePrimary {
		l.forced = false
	}
	if !e.cfg.Arbiter.Enabled {
		// Also after a reload that removed the arbiter.
		e.setWant(false)
		return
	}
	if e.role == RolePrimary && !l.forced && !e.peerAlive() && !e.leaseHeld() {
		why := "peer unheard and no arbiter lease"
		if l.until > 0 {
			why = fmt.Sprintf("peer unheard and the arbiter lease ends in %v", (l.until - e.now).Round(time.Millisecond))
		}
		e.demote(RoleSecondary, why)
	}
	want := e.role == RolePrimary
	if !e.peerAlive() && e.eligible() && !e.incompatibleRecent() {
		switch e.role {
		case RoleSecondary:
			want = true
		case RoleStarting:
			want = e.now-e.roleSince >= e.cfg.ConnectionWait-e.cfg.FailoverTime
		}
	}
	e.setWant(want)
}

// setWant emits WantLease when the wish for a lease changes.
func (e *Engine) setWant(want bool) {
	l := &e.lease
	if want == l.want {
		return
	}
	l.want = want
	if !want {
		l.until, l.state, l.peerEnd = 0, 0, 0
		e.clear(AlarmArbiterLost)
	} else {
		l.state = 0
	}
	e.emit(WantLease{Want: want})
}

// arbiterStatus is Status().Arbiter.
func (e *Engine) arbiterStatus() ArbiterStatus {
	l := e.lease
	s := ArbiterStatus{Holder: l.holder}
	switch {
	case !e.cfg.Arbiter.Enabled:
		s.State = "off"
	case !l.want:
		s.State = "idle"
	case l.state == 0:
		s.State = "asking"
	case l.state == LeaseGranted && l.until <= e.now:
		s.State = "expired" // granted, but the lease has run out since
	default:
		s.State = l.state.String()
	}
	if l.until > e.now {
		s.LeaseMS = (l.until - e.now).Milliseconds()
		s.Until = l.until
	}
	return s
}
