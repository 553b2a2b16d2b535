package engine

import (
	"slices"
	"testing"
	"time"
)

// The replay story of issue 12: a keyless host on LAN 1 recorded the
// main's RELEASE at a swap. Later the spare restarts, the host holds the
// main's frames back for a moment and replays the RELEASE: the spare must
// not claim, and the real primary must not demote.
func TestReplayedReleaseAfterRestartDoesNotClaim(t *testing.T) {
	s := formedPair(t)
	var recorded []FrameReceived
	s.tap = func(from int, f FrameReceived) {
		if from == 0 && f.Peer.Kind == FrameRelease {
			recorded = append(recorded, f)
		}
	}
	// Swap and swap back: the main sends RELEASE frames the host records.
	s.step(0, CommandIssued{Cmd: CmdSwap})
	s.run(time.Second)
	s.step(1, CommandIssued{Cmd: CmdSwap})
	s.run(time.Second)
	s.wantRoles(RolePrimary, RoleSecondary)
	if len(recorded) == 0 {
		t.Fatal("no RELEASE recorded")
	}
	epoch := s.nodes[0].e.Status().Epoch

	// The spare restarts while the host holds the main's frames back.
	s.powerOff(1)
	s.cut[PathLAN2], s.cut[PathLAN1] = true, true
	s.boot(1)
	s.run(20 * time.Millisecond)
	for _, f := range recorded {
		s.step(1, f)
	}
	s.run(50 * time.Millisecond)
	if s.role(1) == RolePrimary {
		t.Fatalf("the restarted spare claimed on a replayed RELEASE\n%s", s.trace())
	}
	if n := s.nodes[1].dropped[DropStale]; n < len(recorded) {
		t.Errorf("stale drops %d, want at least %d", n, len(recorded))
	}
	// The main's frames come through again: the pair forms as before.
	s.cut[PathLAN2], s.cut[PathLAN1] = false, false
	s.run(time.Second)
	s.wantRoles(RolePrimary, RoleSecondary)
	if e := s.nodes[0].e.Status().Epoch; e != epoch {
		t.Errorf("epoch %d after the replay, want %d", e, epoch)
	}
	if s.claims != 0 {
		t.Errorf("two holders for %d ms", s.claims)
	}
}

// After a restart the pair proves itself within a round trip: the peer is
// up again long before connection-wait-time.
func TestFreshnessHandshakeAfterRestart(t *testing.T) {
	for _, who := range []int{0, 1} {
		s := formedPair(t)
		s.powerOff(who)
		s.boot(who)
		took, ok := s.runUntil(time.Second, func() bool { return s.nodes[who].e.Status().Peer.State == PeerUp })
		if !ok || took > 20*time.Millisecond {
			t.Fatalf("node %d after restart: peer up %v after %v", who, ok, took)
		}
		s.run(time.Second)
		s.wantRoles(RolePrimary, RoleSecondary)
	}
}

// The freshness rule on one engine: only a frame that echoes this start's
// nonce moves it; every other one is dropped as stale and answered once
// per new peer nonce.
func TestFreshnessRule(t *testing.T) {
	cfg := testConfig(ModeSpare, 2)
	cfg.Nonce = 0xfeed
	release := PeerInfo{Kind: FrameRelease, NodeID: 1, BootID: 5, Nonce: 0xaaaa, Mode: ModeMain, Role: RoleSecondary, Eligible: true, Data: DataUpToDate, Epoch: 3}
	tests := []struct {
		name   string
		echo   uint64
		claims bool
	}{
		{"no echo (the peer never heard this start)", 0, false},
		{"echo of an earlier start", 0xbeef, false},
		{"echo of this start", 0xfeed, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := New(cfg, 2, 0)
			if err != nil {
				t.Fatal(err)
			}
			e.Start(0)
			p := release
			p.Echo = tt.echo
			acts := e.Step(time.Millisecond, FrameReceived{Path: PathLAN1, Peer: p})
			claimed := slices.ContainsFunc(acts, func(a Action) bool { _, ok := a.(ClaimAddress); return ok })
			stale := slices.Contains(acts, Action(FrameDropped{Reason: DropStale}))
			if claimed != tt.claims || stale == tt.claims {
				t.Fatalf("claimed %v, stale %v: %v", claimed, stale, acts)
			}
			// Whatever its freshness, the frame's nonce is echoed from now on.
			replied := false
			for _, a := range acts {
				if s, ok := a.(Send); ok {
					replied = true
					if s.Info.Echo != 0xaaaa || s.Info.Nonce != 0xfeed {
						t.Errorf("Send %+v: want echo aaaa, nonce feed", s.Info)
					}
				}
			}
			if !replied {
				t.Error("no answer to a new peer nonce")
			}
			if tt.claims {
				return
			}
			// The same stale frame again: dropped, not answered again.
			acts = e.Step(2*time.Millisecond, FrameReceived{Path: PathLAN1, Peer: p})
			if slices.ContainsFunc(acts, func(a Action) bool { _, ok := a.(Send); return ok }) {
				t.Errorf("answered a repeated stale frame: %v", acts)
			}
			if st := e.Status(); st.Peer.State != PeerUnknown || st.Role != RoleStarting {
				t.Errorf("a stale frame moved the engine: %+v", st)
			}
		})
	}
}

// A host on LAN 1 sends each node its own frames back: dropped, counted,
// no alarm, no change of role.
func TestReflectedFramesAreDropped(t *testing.T) {
	s := formedPair(t)
	s.reflect[PathLAN1] = true
	s.run(3 * time.Second)
	s.wantRoles(RolePrimary, RoleSecondary)
	for i, n := range s.nodes {
		if st := n.e.Status(); len(st.Alarms) != 0 {
			t.Errorf("node %d alarms %v", i, st.Alarms)
		}
		if n.dropped[DropReflected] == 0 {
			t.Errorf("node %d counted no reflection", i)
		}
	}
	// A frame of an earlier boot of this node (recorded and sent back
	// later) is a reflection too.
	old := s.nodes[1].e.info(FrameHeartbeat)
	old.BootID--
	old.Nonce = 0x1234
	s.step(1, FrameReceived{Path: PathLAN1, Peer: old})
	if st := s.nodes[1].e.Status(); hasAlarm(st, AlarmDuplicateNodeID) {
		t.Errorf("an old frame of this node raised %v", st.Alarms)
	}
}

// Another node with this node's id raises duplicate-node-id; the alarm
// clears after connection-wait-time without such a frame.
func TestDuplicateNodeIDClears(t *testing.T) {
	s := formedPair(t)
	twin := s.nodes[1].e.info(FrameHeartbeat)
	twin.Nonce ^= 0xff
	s.step(1, FrameReceived{Path: PathLAN1, Peer: twin})
	if st := s.nodes[1].e.Status(); !hasAlarm(st, AlarmDuplicateNodeID) {
		t.Fatalf("alarms %v, want duplicate-node-id", st.Alarms)
	}
	wait := s.nodes[1].cfg.ConnectionWait
	s.run(wait / 2)
	s.step(1, FrameReceived{Path: PathLAN1, Peer: twin}) // still there
	s.run(wait - 10*time.Millisecond)
	if st := s.nodes[1].e.Status(); !hasAlarm(st, AlarmDuplicateNodeID) {
		t.Fatalf("alarm cleared while the twin was heard %v ago", wait-10*time.Millisecond)
	}
	s.run(20 * time.Millisecond)
	if st := s.nodes[1].e.Status(); hasAlarm(st, AlarmDuplicateNodeID) {
		t.Errorf("alarm not cleared after a quiet period: %v", st.Alarms)
	}
	s.wantRoles(RolePrimary, RoleSecondary)
}
