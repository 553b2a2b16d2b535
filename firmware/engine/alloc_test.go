package engine

import (
	"testing"
)

// A formed pair at steady state: each heartbeat interval, both engines
// tick (their heartbeat falls due) and take the other's heartbeat. None of
// it allocates: at 2 ms x 3 that is 500 intervals a second, and garbage
// per heartbeat is the collector's work (issue 15). Before the engine
// reused its action buffers and the boxed Send, a heartbeat cost two
// allocations (the returned slice and the Send boxed as an Action).
func TestNoAllocationPerHeartbeat(t *testing.T) {
	s := formedPair(t)
	s.wantRoles(RolePrimary, RoleSecondary)
	m, sp := s.nodes[0].e, s.nodes[1].e
	iv := s.nodes[0].cfg.Interval
	now := s.now
	sends := 0
	// deliver hands the heartbeats among acts to the other engine, and
	// what that one sends in answer back, as the line would.
	var deliver func(acts []Action, to, from *Engine)
	deliver = func(acts []Action, to, from *Engine) {
		for _, a := range acts {
			if snd, ok := a.(Send); ok && snd.LAN2 {
				sends++
				deliver(to.StepFrame(now, FrameReceived{Path: PathLAN2, Peer: snd.Info}), from, to)
			}
		}
	}
	exchange := func(from, to *Engine) { deliver(from.Tick(now), to, from) }
	interval := func() {
		now += iv
		exchange(m, sp)
		exchange(sp, m)
	}
	for range 20 { // past any change the steps above still carry
		interval()
	}
	sends = 0
	if n := testing.AllocsPerRun(200, interval); n != 0 {
		t.Errorf("allocations per heartbeat interval of a formed pair: %v, want 0", n)
	}
	if sends < 2*200 {
		t.Fatalf("%d heartbeats in 201 intervals, want two per interval: the test exchanged nothing", sends)
	}
	if m.Role() != RolePrimary || sp.Role() != RoleSecondary || sp.Status().Peer.State != PeerUp {
		t.Fatalf("the pair fell apart during the test: %v / %v, spare's peer %v", m.Role(), sp.Role(), sp.Status().Peer.State)
	}
}
