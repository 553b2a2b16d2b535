package engine

import (
	"time"

	"testing"
)

// A Tick at exactly NextDue does the work: the heartbeat leaves at its
// time and the dead peer is noticed at failover-time, not a tick later.
func TestNextDue(t *testing.T) {
	s := formedPair(t)
	sp := s.nodes[1]
	cfg := sp.cfg
	// The primary's next heartbeat is its own schedule.
	if due, next := s.nodes[0].e.NextDue(), s.nodes[0].e.nextLAN2; due != min(next, s.nodes[0].e.nextLAN1) || due <= s.now {
		t.Fatalf("primary: NextDue %v, next heartbeats %v/%v, now %v", due, next, s.nodes[0].e.nextLAN1, s.now)
	}
	s.powerOff(0)
	// Walk the spare from due time to due time only: it must take over at
	// failover-time after the last frame it heard, to the nanosecond.
	heard := max(sp.e.heardLAN2, sp.e.heardLAN1)
	for range 1000 {
		due := sp.e.NextDue()
		if due == 0 {
			t.Fatalf("nothing due at %v while secondary", s.now)
		}
		s.now = due
		// The answers that came in meanwhile (probe, epoch), then the tick.
		var later []delivery
		for _, d := range s.queue {
			switch {
			case d.to != 1:
			case d.at <= s.now:
				s.step(1, d.ev)
			default:
				later = append(later, d)
			}
		}
		s.queue = later
		s.apply(1, sp.e.Tick(due))
		if s.role(1) == RolePrimary {
			if got := s.now - heard; got != cfg.FailoverTime {
				t.Fatalf("took over %v after the last frame, want %v", got, cfg.FailoverTime)
			}
			return
		}
	}
	t.Fatalf("no takeover walking NextDue\n%s", s.trace())
}

// The probe that starts before failover-time is up can be answered by the
// peer in its last moments; the takeover then asks once more instead of
// waiting another failover-time.
func TestProbeAnsweredByTheDyingPeer(t *testing.T) {
	s := formedPair(t)
	sp := s.nodes[1]
	cfg := sp.cfg
	s.cut[PathLAN2], s.cut[PathLAN1] = true, true // the main's last frames
	cut := s.now
	n := sp.probes
	if _, ok := s.runUntil(cfg.FailoverTime, func() bool { return sp.probes > n }); !ok {
		t.Fatalf("no probe before failover-time\n%s", s.trace())
	}
	s.powerOff(0)
	// The main answered that probe just before it died.
	for i, d := range s.queue {
		if _, ok := d.ev.(ProbeDone); ok && d.to == 1 {
			s.queue[i].ev = ProbeDone{InUse: true}
		}
	}
	if _, ok := s.runUntil(3*cfg.FailoverTime, func() bool { return s.role(1) == RolePrimary }); !ok {
		t.Fatalf("no takeover\n%s", s.trace())
	}
	if got, limit := s.now-cut, cfg.FailoverTime+3*cfg.ProbeTimeout; got > limit {
		t.Errorf("took over %v after the main's last frame, want at most %v", got, limit)
	}
}

// walkDue advances both nodes from event to event only: a delivery, or a
// node's NextDue. The daemon ticks its engine no more often than that (and
// its regular tick, which this leaves out).
func (s *sim) walkDue(until time.Duration, stop func() bool) {
	for s.now < until && !stop() {
		next := until
		for _, n := range s.nodes {
			if due := n.e.NextDue(); !n.down && due > 0 && due < next {
				next = due
			}
		}
		for _, d := range s.queue {
			next = min(next, max(d.at, s.now))
		}
		s.now = next
		var later []delivery
		for _, d := range s.queue {
			if d.at <= s.now {
				s.step(d.to, d.ev)
			} else {
				later = append(later, d)
			}
		}
		s.queue = later
		for i, n := range s.nodes {
			if !n.down {
				s.apply(i, n.e.Tick(s.now))
			}
		}
	}
}

// A cut failover line with LAN 1 intact raises failover-line-down at
// failover-time after the last LAN 2 frame, without waiting for a tick.
func TestNextDueLAN2Silence(t *testing.T) {
	s := formedPair(t)
	sp := s.nodes[1]
	s.lan1 = 30 * time.Millisecond // LAN 1 frames do not arrive in step with LAN 2's
	s.run(time.Second)
	s.cut[PathLAN2] = true
	heard := sp.e.heardLAN2
	s.walkDue(s.now+10*sp.cfg.FailoverTime, func() bool { return hasAlarm(sp.e.Status(), AlarmFailoverLineDown) })
	if !hasAlarm(sp.e.Status(), AlarmFailoverLineDown) {
		t.Fatalf("no failover-line-down walking NextDue\n%s", s.trace())
	}
	// The alarm also waits for a LAN 1 frame half a failover-time after
	// the last LAN 2 one; LAN 1 heartbeats are lan1-interval apart.
	if got, limit := s.now-heard, sp.cfg.FailoverTime; got > limit {
		t.Fatalf("failover-line-down %v after the last LAN 2 frame, want at most %v", got, limit)
	}
}

// NextDueJoin moves a probe start due shortly before the next heartbeat to
// that heartbeat, and nothing else.
func TestNextDueJoin(t *testing.T) {
	s := formedPair(t)
	sp := s.nodes[1]
	e := sp.e
	cfg := sp.cfg
	silent := max(e.heardLAN2, e.heardLAN1)
	probe := silent + cfg.FailoverTime - 2*cfg.ProbeTimeout
	send := min(e.nextLAN2, e.nextLAN1)
	// Walk the clock to just before the probe's start with the heartbeat
	// due after it (no frame arrives: the main is off).
	s.powerOff(0)
	e.now = probe - time.Millisecond
	e.nextLAN2, e.nextLAN1 = probe+10*time.Millisecond, probe+10*time.Millisecond
	send = e.nextLAN2
	if got := e.NextDue(); got != probe {
		t.Fatalf("NextDue %v, want the probe's start %v", got, probe)
	}
	if got := e.NextDueJoin(10 * time.Millisecond); got != send {
		t.Errorf("NextDueJoin(10ms) %v, want the heartbeat %v", got, send)
	}
	if got := e.NextDueJoin(9 * time.Millisecond); got != probe {
		t.Errorf("NextDueJoin(9ms) %v, want the probe's start %v", got, probe)
	}
	// failover-time is never joined to a later heartbeat.
	e.now = probe + time.Millisecond
	fail := silent + cfg.FailoverTime
	e.nextLAN2, e.nextLAN1 = fail+time.Millisecond, fail+time.Millisecond
	if got := e.NextDueJoin(time.Second); got != fail {
		t.Errorf("NextDueJoin after the probe's start: %v, want failover-time %v", got, fail)
	}
}
