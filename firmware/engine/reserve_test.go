package engine

import (
	"errors"
	"slices"
	"testing"
	"time"
)

// The reserved epoch: a secondary keeps its next claim's epoch on disk in
// a record of its own, so that a takeover does not wait for an fsync.

func countActions[T Action](acts []Action) int {
	n := 0
	for _, a := range acts {
		if _, ok := a.(T); ok {
			n++
		}
	}
	return n
}

func persisted(acts []Action) []uint64 {
	var out []uint64
	for _, a := range acts {
		if p, ok := a.(PersistEpoch); ok {
			out = append(out, p.Epoch)
		}
	}
	return out
}

// lastSentEpoch is the epoch in the last frame node i sent.
func lastSentEpoch(t *testing.T, acts []Action) uint64 {
	t.Helper()
	for i := len(acts) - 1; i >= 0; i-- {
		if s, ok := acts[i].(Send); ok {
			return s.Info.Epoch
		}
	}
	t.Fatal("no frame sent")
	return 0
}

func TestFollowerReservesAhead(t *testing.T) {
	s := formedPair(t)
	s.wantRoles(RolePrimary, RoleSecondary)
	sp := s.nodes[1]
	// The secondary reserved the epoch of its next claim while the main is
	// alive; the current epoch, on disk, in status and in its frames, is
	// still the pair's.
	if sp.reserved != 2 || sp.disk != 1 {
		t.Errorf("secondary: reserved %d, epoch file %d; want 2 reserved ahead of 1", sp.reserved, sp.disk)
	}
	if e := sp.e.Status().Epoch; e != 1 {
		t.Errorf("secondary's status epoch %d, want 1 (the reserved one is not current)", e)
	}
	if e := lastSentEpoch(t, sp.actions); e != 1 {
		t.Errorf("secondary's frames carry epoch %d, want 1", e)
	}
	// 1 while the main was being elected, 2 once it claimed 1: one
	// write per epoch.
	var asked []uint64
	for _, a := range sp.actions {
		if r, ok := a.(ReserveEpoch); ok {
			asked = append(asked, r.Epoch)
		}
	}
	if !slices.Equal(asked, []uint64{1, 2}) {
		t.Errorf("reservations %v, want [1 2]", asked)
	}
	// The primary reserves nothing.
	if s.nodes[0].reserved != 0 {
		t.Errorf("primary reserved %d", s.nodes[0].reserved)
	}

	// The main dies, the spare takes epoch 2; the main returns, adopts 2
	// and reserves 3 as the new follower.
	s.powerOff(0)
	s.run(2 * time.Second)
	s.boot(0)
	s.nodes[0].actions = nil
	s.run(500 * time.Millisecond)
	s.wantRoles(RoleSecondary, RolePrimary)
	m := s.nodes[0]
	if e := m.e.Status().Epoch; e != 2 || m.disk != 2 || m.reserved != 3 {
		t.Errorf("returned main: epoch %d, file %d, reserved %d; want 2, 2, 3", e, m.disk, m.reserved)
	}
}

// A reservation slower than the lead the peer's silence gives (a loaded
// card at short intervals) is still done before the takeover.
func TestClaimCoveredByReservation(t *testing.T) {
	s := pair(t)
	sp := s.nodes[1]
	// Longer than 2 x probe-time, the reservation's lead when the spare
	// reserved only once the main fell silent.
	sp.reserveDelay = 3 * sp.cfg.ProbeTimeout
	s.boot(0)
	s.boot(1)
	s.run(time.Second)
	s.wantRoles(RolePrimary, RoleSecondary)
	s.powerOff(0)
	sp.actions = nil
	if _, ok := s.runUntil(3*time.Second, func() bool { return s.role(1) == RolePrimary }); !ok {
		t.Fatalf("spare did not take over\n%s", s.trace())
	}
	if p := persisted(sp.actions); len(p) != 0 {
		t.Errorf("the takeover persisted epochs %v on its critical path: %v", p, sp.actions)
	}
	if !before(sp.actions, ClaimAddress{}, RecordEpoch{}) {
		t.Errorf("takeover actions %v: want the epoch recorded after the claim", sp.actions)
	}
	if e := sp.e.Status().Epoch; e != 2 || sp.disk != 2 {
		t.Errorf("after the takeover: epoch %d, file %d; want 2", e, sp.disk)
	}
}

// A claim made under the reserved record whose epoch file was not written
// yet when the node crashed: after the restart the node shows the epoch
// file's epoch, and its next claim takes a higher epoch than the reserved
// one, never the same twice.
func TestRestartAboveReservedEpoch(t *testing.T) {
	s := formedPair(t)
	sp := s.nodes[1]
	sp.faulty = func(a Action) bool { _, ok := a.(RecordEpoch); return ok } // lost in the crash
	s.powerOff(0)
	if _, ok := s.runUntil(3*time.Second, func() bool { return s.role(1) == RolePrimary }); !ok {
		t.Fatalf("spare did not take over\n%s", s.trace())
	}
	if e := sp.e.Status().Epoch; e != 2 || sp.disk != 1 || sp.reserved != 2 {
		t.Fatalf("spare claimed epoch %d with file %d, reserved %d; want 2 under the reservation", e, sp.disk, sp.reserved)
	}
	s.powerOff(1)
	sp.faulty = nil
	s.boot(1)
	if e := sp.e.Status().Epoch; e != 1 {
		t.Errorf("restarted spare shows epoch %d, want 1 (the file's; the reserved one is not current)", e)
	}
	sp.actions = nil
	if _, ok := s.runUntil(5*time.Second, func() bool { return s.role(1) == RolePrimary }); !ok {
		t.Fatalf("restarted spare did not take over alone\n%s", s.trace())
	}
	if e := sp.e.Status().Epoch; e != 3 {
		t.Errorf("restarted spare claimed epoch %d, want 3 (2 may have been claimed before the crash)", e)
	}
	// Nothing covered 3: it was persisted before the claim.
	if !slices.Equal(persisted(sp.actions), []uint64{3}) || !before(sp.actions, PersistEpoch{}, ClaimAddress{}) {
		t.Errorf("claim after the restart: %v; want PersistEpoch 3 before ClaimAddress", sp.actions)
	}
}

// A reserved record that cannot be written covers nothing: the claim
// persists its epoch before the address, as without a reservation, and the
// engine does not retry at every tick of a failing card.
func TestFailedReservationFallsBack(t *testing.T) {
	s := pair(t)
	sp := s.nodes[1]
	sp.reserveErr = errors.New("EIO")
	s.boot(0)
	s.boot(1)
	s.run(time.Second)
	s.wantRoles(RolePrimary, RoleSecondary)
	if sp.reserved != 0 {
		t.Fatalf("reserved %d with failing writes", sp.reserved)
	}
	start := s.now
	tried := countActions[ReserveEpoch](sp.actions)
	s.powerOff(0)
	sp.actions = nil
	if _, ok := s.runUntil(3*time.Second, func() bool { return s.role(1) == RolePrimary }); !ok {
		t.Fatalf("spare did not take over\n%s", s.trace())
	}
	if !slices.Equal(persisted(sp.actions), []uint64{2}) || !before(sp.actions, PersistEpoch{}, ClaimAddress{}) {
		t.Errorf("takeover without a reservation: %v; want PersistEpoch 2 before ClaimAddress", sp.actions)
	}
	if sp.disk != 2 || sp.e.Status().Epoch != 2 {
		t.Errorf("epoch %d, file %d; want 2", sp.e.Status().Epoch, sp.disk)
	}
	// One attempt, and one more per connection-wait-time at most.
	if n, most := tried+countActions[ReserveEpoch](sp.actions), 1+int(s.now/sp.cfg.ConnectionWait); n > most {
		t.Errorf("%d reservations over %v (%v of them with the main dead), want at most %d", n, s.now, s.now-start, most)
	}
}

// A primary that steps down with its peer dead (the daemon stopping)
// reserves nothing: it follows no live peer, and a reservation would only
// raise the floor of its next start (it claimed 4 instead of 3 after a
// restart in test/pair's TestRestartKeepsEpoch).
func TestNoReservationWithoutLivePeer(t *testing.T) {
	s := formedPair(t)
	sp := s.nodes[1]
	s.powerOff(0)
	s.run(2 * time.Second)
	if st := sp.e.Status(); st.Role != RolePrimary || st.Peer.State != PeerDown {
		t.Fatalf("spare %s with peer %s, want primary with the peer down", st.Role, st.Peer.State)
	}
	sp.actions = nil
	s.step(1, CommandIssued{Cmd: CmdShutdown})
	s.run(100 * time.Millisecond) // the to-secondary hook, then the daemon exits
	if s.role(1) != RoleSecondary {
		t.Fatalf("stopping primary is %s, want secondary", s.role(1))
	}
	if n := countActions[ReserveEpoch](sp.actions); n != 0 || sp.reserved != 2 {
		t.Errorf("%d reservations after stepping down alone, reserved %d; want none, 2", n, sp.reserved)
	}
	s.powerOff(1)
	s.boot(1)
	s.run(3 * time.Second)
	if e := sp.e.Status().Epoch; e != 3 || s.role(1) != RolePrimary {
		t.Errorf("restarted spare: %s epoch %d, want primary 3", s.role(1), e)
	}
}
