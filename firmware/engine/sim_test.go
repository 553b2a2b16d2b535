package engine

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// The in-memory network of the scenario tests: two engines, a fake clock,
// frames that can be dropped, delayed and cut per path, and a LAN 1 on which
// the holder of the service address answers ARP probes.

const tickStep = time.Millisecond

func testConfig(mode Mode, id uint64) Config {
	return Config{
		Mode:       mode,
		NodeID:     id,
		Preferred:  mode == ModeMain,
		Recovery:   RecoveryAutomatic,
		OnLineLoss: LineLossProbe,
		Software:   "1.0.0",
		BootID:     1,
		Nonce:      id<<32 | 1,
		Durations: Durations{
			Interval:       100 * time.Millisecond,
			LAN1Interval:   200 * time.Millisecond,
			FailoverTime:   500 * time.Millisecond,
			ConnectionWait: 2 * time.Second,
			ProbeTimeout:   50 * time.Millisecond,
		},
	}
}

type simNode struct {
	name     string
	cfg      Config
	e        *Engine
	down     bool   // powered off
	holds    bool   // holds the service address
	disk     uint64 // the epoch file
	reserved uint64 // the reserved record
	// reserveErr fails the reserved record's writes; reserveDelay is how
	// long one takes (3 ms when zero).
	reserveErr   error
	reserveDelay time.Duration
	hooks        []string
	logs         []Log
	roles        []RoleChanged
	actions      []Action
	probes       int
	takeover     time.Duration // when it last claimed the address
	data         *DataChanged  // the datastore's state at boot
	faulty       func(Action) bool
	dropped      map[DropReason]int
}

type delivery struct {
	at   time.Duration
	to   int
	ev   Event
	path Path
}

type sim struct {
	t       *testing.T
	reflect map[Path]bool                   // the path sends every frame back to its sender too
	tap     func(from int, f FrameReceived) // sees every frame put on the wire
	now     time.Duration
	nodes   [2]*simNode
	cut     map[Path]bool
	drop    int // percent of frames dropped
	delay   time.Duration
	lan1    time.Duration // extra delay of the LAN 1 path
	rng     *rand.Rand
	queue   []delivery
	claims  int // how many times two nodes held the address at once (ms)
	dual    bool
}

func newSim(t *testing.T, cfgs ...Config) *sim {
	t.Helper()
	s := &sim{t: t, cut: map[Path]bool{}, reflect: map[Path]bool{}, rng: rand.New(rand.NewPCG(1, 2)), delay: time.Millisecond}
	for i, c := range cfgs {
		s.nodes[i] = &simNode{name: c.Mode.String(), cfg: c, down: true, dropped: map[DropReason]int{}}
	}
	return s
}

// boot starts node i (again) with the epoch and the reserved record on
// its disk, a new boot id and a new nonce.
func (s *sim) boot(i int) {
	n := s.nodes[i]
	n.cfg.BootID++
	n.cfg.ReservedEpoch = n.reserved
	n.cfg.Nonce = s.rng.Uint64() | 1
	e, err := New(n.cfg, n.disk, s.now)
	if err != nil {
		s.t.Fatalf("New(%s): %v", n.name, err)
	}
	n.e, n.down, n.holds = e, false, false
	if n.data != nil {
		s.apply(i, e.Step(s.now, *n.data))
	}
	s.apply(i, e.Start(s.now))
}

// powerOff kills node i at once: no RELEASE, no release of the address.
func (s *sim) powerOff(i int) {
	n := s.nodes[i]
	n.down, n.holds = true, false
	s.queue = slices.DeleteFunc(s.queue, func(d delivery) bool { return d.to == i })
}

// receivers returns who gets a frame node i sends on path p: the peer, and
// the sender itself where the path reflects frames.
func (s *sim) receivers(i int, p Path) []int {
	to := []int{1 - i}
	if s.reflect[p] {
		to = append(to, i)
	}
	return to
}

func (s *sim) step(i int, ev Event) {
	if s.nodes[i].down {
		return
	}
	if er, ok := ev.(EpochReserved); ok && er.Err == nil {
		s.nodes[i].reserved = max(s.nodes[i].reserved, er.Epoch)
	}
	s.apply(i, s.nodes[i].e.Step(s.now, ev))
}

func (s *sim) apply(i int, acts []Action) {
	n := s.nodes[i]
	for _, a := range acts {
		n.actions = append(n.actions, a)
		if n.faulty != nil && n.faulty(a) {
			continue
		}
		switch a := a.(type) {
		case PersistEpoch:
			n.disk = max(n.disk, a.Epoch)
		case ReserveEpoch:
			delay := n.reserveDelay
			if delay == 0 {
				delay = 3 * time.Millisecond
			}
			s.queue = append(s.queue, delivery{at: s.now + delay, to: i, ev: EpochReserved{Epoch: a.Epoch, Err: n.reserveErr}})
		case RecordEpoch:
			n.disk = max(n.disk, a.Epoch)
		case ClaimAddress:
			if n.disk < n.e.epoch && n.reserved < n.e.epoch {
				s.t.Fatalf("%s claimed the address before persisting epoch %d (disk %d, reserved %d)", n.name, n.e.epoch, n.disk, n.reserved)
			}
			n.holds = true
			n.takeover = s.now
		case ReleaseAddress:
			n.holds = false
		case Send:
			info := a.Info
			for _, p := range []Path{PathLAN2, PathLAN1} {
				if (p == PathLAN2 && !a.LAN2) || (p == PathLAN1 && !a.LAN1) {
					continue
				}
				if s.tap != nil {
					s.tap(i, FrameReceived{Path: p, Peer: info})
				}
				if s.cut[p] {
					continue
				}
				if s.drop > 0 && s.rng.IntN(100) < s.drop {
					continue
				}
				at := s.now + s.delay
				if p == PathLAN1 {
					at += s.lan1
				}
				for _, to := range s.receivers(i, p) {
					s.queue = append(s.queue, delivery{at: at, to: to, ev: FrameReceived{Path: p, Peer: info}, path: p})
				}
			}
		case StartProbe:
			n.probes++
			other := s.nodes[1-i]
			inUse := !s.cut[PathLAN1] && other != nil && !other.down && other.holds
			s.queue = append(s.queue, delivery{at: s.now + n.cfg.ProbeTimeout, to: i, ev: ProbeDone{InUse: inUse}})
		case RunHook:
			n.hooks = append(n.hooks, a.Name)
			if a.Wait {
				s.queue = append(s.queue, delivery{at: s.now + 5*time.Millisecond, to: i, ev: HookDone{Name: a.Name}})
			}
		case FlushMirror:
			s.queue = append(s.queue, delivery{at: s.now + 5*time.Millisecond, to: i, ev: FlushDone{}})
		case FrameDropped:
			n.dropped[a.Reason]++
		case Log:
			n.logs = append(n.logs, a)
		case RoleChanged:
			n.roles = append(n.roles, a)
		}
	}
}

// run advances the clock by d, delivering frames and ticking both engines.
func (s *sim) run(d time.Duration) {
	end := s.now + d
	for s.now < end {
		s.now += tickStep
		var due []delivery
		s.queue = slices.DeleteFunc(s.queue, func(q delivery) bool {
			if q.at <= s.now {
				due = append(due, q)
				return true
			}
			return false
		})
		for _, q := range due {
			s.step(q.to, q.ev)
		}
		for i, n := range s.nodes {
			if n != nil && !n.down {
				s.apply(i, n.e.Tick(s.now))
			}
		}
		if s.nodes[0].holds && s.nodes[1] != nil && s.nodes[1].holds {
			s.claims++
		}
	}
}

// runUntil advances until cond holds or limit passes; it returns the time taken.
func (s *sim) runUntil(limit time.Duration, cond func() bool) (time.Duration, bool) {
	start := s.now
	for s.now-start < limit {
		if cond() {
			return s.now - start, true
		}
		s.run(tickStep)
	}
	return s.now - start, cond()
}

func (s *sim) role(i int) Role { return s.nodes[i].e.Role() }

func (s *sim) wantRoles(r0, r1 Role) {
	s.t.Helper()
	if s.role(0) != r0 || s.role(1) != r1 {
		s.t.Fatalf("roles = %s/%s, want %s/%s\n%s", s.role(0), s.role(1), r0, r1, s.trace())
	}
	for i, r := range []Role{r0, r1} {
		if got := s.nodes[i].holds; got != (r == RolePrimary) {
			s.t.Fatalf("%s holds address = %v in role %s", s.nodes[i].name, got, r)
		}
	}
}

func (s *sim) trace() string {
	var b strings.Builder
	for _, n := range s.nodes {
		fmt.Fprintf(&b, "%s:\n", n.name)
		for _, l := range n.logs {
			fmt.Fprintf(&b, "  %s: %s\n", l.Kind, l.Message)
		}
	}
	return b.String()
}

func hasAlarm(st Status, a Alarm) bool { return slices.Contains(st.Alarms, a) }

func pair(t *testing.T) *sim {
	return newSim(t, testConfig(ModeMain, 1), testConfig(ModeSpare, 2))
}

// formedPair boots a main and a spare together and lets them form the pair.
func formedPair(t *testing.T) *sim {
	s := pair(t)
	s.boot(0)
	s.boot(1)
	s.run(time.Second)
	return s
}

func TestPairBothBootTogether(t *testing.T) {
	s := pair(t)
	s.boot(0)
	s.boot(1)
	s.run(300 * time.Millisecond)
	s.wantRoles(RolePrimary, RoleSecondary)
	if s.nodes[0].e.Status().Peer.State != PeerUp || s.nodes[1].e.Status().Peer.State != PeerUp {
		t.Fatalf("peers not up: %+v / %+v", s.nodes[0].e.Status().Peer, s.nodes[1].e.Status().Peer)
	}
	if s.nodes[0].probes != 0 {
		t.Errorf("main probed %d times although the peer answered", s.nodes[0].probes)
	}
	if s.nodes[0].e.Status().Epoch != 1 || s.nodes[1].e.Status().Epoch != 1 {
		t.Errorf("epochs = %d/%d, want 1/1", s.nodes[0].e.Status().Epoch, s.nodes[1].e.Status().Epoch)
	}
}

func TestPairSpareBootsFirstAndTakes(t *testing.T) {
	s := pair(t)
	s.boot(1)
	s.run(3 * time.Second)
	if s.role(1) != RolePrimary {
		t.Fatalf("spare alone after connection-wait is %s\n%s", s.role(1), s.trace())
	}
	if s.nodes[1].probes == 0 {
		t.Error("spare claimed without probing the address")
	}
	if s.nodes[1].e.Status().FailoverLit {
		t.Error("failover LED lit by a start, not a takeover")
	}
	s.boot(0)
	s.run(time.Second)
	// A primary peer is followed, even by the main.
	s.wantRoles(RoleSecondary, RolePrimary)
	if s.claims != 0 {
		t.Errorf("two holders for %d ms", s.claims)
	}
}

func TestPairMainDies(t *testing.T) {
	s := formedPair(t)
	s.wantRoles(RolePrimary, RoleSecondary)
	s.powerOff(0)
	died := s.now
	s.nodes[1].actions = nil
	took, ok := s.runUntil(3*time.Second, func() bool { return s.role(1) == RolePrimary })
	if !ok {
		t.Fatalf("spare did not take over\n%s", s.trace())
	}
	cfg := s.nodes[1].cfg
	if limit := cfg.FailoverTime + cfg.Interval; took > limit {
		t.Errorf("takeover after %v, want at most %v", took, limit)
	}
	st := s.nodes[1].e.Status()
	if st.Epoch != 2 || s.nodes[1].disk != 2 || !st.FailoverLit || st.Peer.State != PeerDown {
		t.Errorf("after takeover: epoch %d disk %d lit %v peer %s", st.Epoch, s.nodes[1].disk, st.FailoverLit, st.Peer.State)
	}
	if s.nodes[1].takeover-died < cfg.FailoverTime-cfg.Interval {
		t.Errorf("claimed %v after the main died, before failover-time", s.nodes[1].takeover-died)
	}
	if !slices.Contains(s.nodes[1].hooks, "to-primary") {
		t.Errorf("hooks = %v, want to-primary", s.nodes[1].hooks)
	}
	if hasAlarm(st, AlarmFailoverLineDown) {
		t.Errorf("a dead main raised failover-line-down: %v", st.Alarms)
	}
	// The epoch was reserved while the main was alive: no fsync before
	// the claim, the current epoch written after it.
	if !before(s.nodes[1].actions, ClaimAddress{}, RecordEpoch{}) ||
		slices.ContainsFunc(s.nodes[1].actions, func(a Action) bool { _, ok := a.(PersistEpoch); return ok }) {
		t.Errorf("takeover actions %v: want no PersistEpoch and RecordEpoch after the claim", s.nodes[1].actions)
	}
}

func TestPowerLossNeverLooksLikeCutLine(t *testing.T) {
	// Whatever the phase of the LAN 1 heartbeat at the power cut, a dead
	// main is not a cut failover line.
	for off := time.Duration(0); off < 200*time.Millisecond; off += 10 * time.Millisecond {
		s := pair(t)
		s.lan1 = 40 * time.Millisecond // the second path is slower
		s.boot(0)
		s.boot(1)
		s.run(time.Second + off)
		s.powerOff(0)
		s.run(time.Second)
		if st := s.nodes[1].e.Status(); hasAlarm(st, AlarmFailoverLineDown) || st.Role != RolePrimary {
			t.Fatalf("power cut at +%v: spare %s with alarms %v", off, st.Role, st.Alarms)
		}
	}
}

func TestRecovery(t *testing.T) {
	for _, rec := range []Recovery{RecoveryAutomatic, RecoveryManual} {
		t.Run(rec.String(), func(t *testing.T) {
			m, sp := testConfig(ModeMain, 1), testConfig(ModeSpare, 2)
			m.Recovery, sp.Recovery = rec, rec
			s := newSim(t, m, sp)
			s.boot(0)
			s.boot(1)
			s.run(time.Second)
			s.powerOff(0)
			s.run(2 * time.Second)
			if s.role(1) != RolePrimary {
				t.Fatalf("spare is %s", s.role(1))
			}
			s.boot(0)
			s.run(500 * time.Millisecond)
			s.wantRoles(RoleSecondary, RolePrimary)
			s.run(5 * time.Second)
			if rec == RecoveryAutomatic {
				s.wantRoles(RolePrimary, RoleSecondary)
				if e := s.nodes[0].e.Status().Epoch; e != 3 {
					t.Errorf("epoch after failback = %d, want 3", e)
				}
				if !slices.Contains(s.nodes[1].hooks, "to-secondary") {
					t.Errorf("spare hooks %v lack to-secondary", s.nodes[1].hooks)
				}
			} else {
				s.wantRoles(RoleSecondary, RolePrimary)
			}
			if s.claims != 0 {
				t.Errorf("two holders for %d ms", s.claims)
			}
		})
	}
}

func TestSwap(t *testing.T) {
	s := formedPair(t)
	s.step(0, CommandIssued{Cmd: CmdSwap})
	took, ok := s.runUntil(time.Second, func() bool { return s.role(1) == RolePrimary })
	if !ok {
		t.Fatalf("swap did not hand over\n%s", s.trace())
	}
	if took > 100*time.Millisecond {
		t.Errorf("handover took %v: the peer waited for a timeout", took)
	}
	s.run(5 * time.Second)
	// A swap is not undone by automatic recovery.
	s.wantRoles(RoleSecondary, RolePrimary)
	if s.claims != 0 {
		t.Errorf("two holders for %d ms", s.claims)
	}
	// A swap on the secondary is refused and logged.
	s.step(0, CommandIssued{Cmd: CmdSwap})
	if l := s.nodes[0].logs[len(s.nodes[0].logs)-1]; l.Kind != "swap-refused" {
		t.Errorf("last log %+v, want swap-refused", l)
	}
}

func TestSwapRefusedWithoutPeer(t *testing.T) {
	s := pair(t)
	s.boot(0)
	s.run(3 * time.Second)
	s.step(0, CommandIssued{Cmd: CmdSwap})
	s.run(time.Second)
	if s.role(0) != RolePrimary {
		t.Fatalf("lone primary handed over to nobody")
	}
}

func TestStalePrimaryHearsHigherEpoch(t *testing.T) {
	m, sp := testConfig(ModeMain, 1), testConfig(ModeSpare, 2)
	m.OnLineLoss, sp.OnLineLoss = LineLossTakeover, LineLossTakeover
	s := newSim(t, m, sp)
	s.boot(0)
	s.boot(1)
	s.run(time.Second)
	// Partition both paths: with on-line-loss = takeover the spare claims too.
	s.cut[PathLAN2], s.cut[PathLAN1] = true, true
	s.run(2 * time.Second)
	if s.role(0) != RolePrimary || s.role(1) != RolePrimary {
		t.Fatalf("roles %s/%s, want two primaries in the partition", s.role(0), s.role(1))
	}
	s.cut[PathLAN2], s.cut[PathLAN1] = false, false
	s.run(300 * time.Millisecond)
	// The main has epoch 1, the spare 2: the main steps down at once.
	s.wantRoles(RoleSecondary, RolePrimary)
	if got := s.nodes[0].actions; !before(got, ReleaseAddress{}, RoleChanged{}) {
		t.Errorf("demotion did not release the address first: %v", got)
	}
	if e := s.nodes[0].e.Status().Epoch; e != 2 || s.nodes[0].disk != 2 {
		t.Errorf("demoted main epoch %d disk %d, want 2 adopted", e, s.nodes[0].disk)
	}
}

// before reports whether the last a-typed action comes before the last b-typed one.
func before(acts []Action, a, b Action) bool {
	ia, ib := -1, -1
	for i, x := range acts {
		if fmt.Sprintf("%T", x) == fmt.Sprintf("%T", a) {
			ia = i
		}
		if fmt.Sprintf("%T", x) == fmt.Sprintf("%T", b) {
			ib = i
		}
	}
	return ia >= 0 && ib >= 0 && ia < ib
}

func TestEqualEpochDualPrimaryTieBreak(t *testing.T) {
	m, sp := testConfig(ModeMain, 1), testConfig(ModeSpare, 2)
	s := newSim(t, m, sp)
	// Both come up alone in a partition with the same epoch.
	s.cut[PathLAN2], s.cut[PathLAN1] = true, true
	s.boot(0)
	s.boot(1)
	s.run(3 * time.Second)
	if s.role(0) != RolePrimary || s.role(1) != RolePrimary {
		t.Fatalf("roles %s/%s", s.role(0), s.role(1))
	}
	s.cut[PathLAN2], s.cut[PathLAN1] = false, false
	s.run(300 * time.Millisecond)
	s.wantRoles(RolePrimary, RoleSecondary)
}

func TestFailoverLineCut(t *testing.T) {
	s := formedPair(t)
	s.cut[PathLAN2] = true
	s.run(3 * time.Second)
	s.wantRoles(RolePrimary, RoleSecondary)
	for i := range 2 {
		if st := s.nodes[i].e.Status(); !hasAlarm(st, AlarmFailoverLineDown) || !st.Unacked {
			t.Errorf("%s alarms %v, want failover-line-down", s.nodes[i].name, st.Alarms)
		}
	}
	if !slices.Contains(s.nodes[1].hooks, "alarm") {
		t.Errorf("no alarm hook on the spare: %v", s.nodes[1].hooks)
	}
	s.step(1, CommandIssued{Cmd: CmdAcknowledge})
	if st := s.nodes[1].e.Status(); st.Unacked || !hasAlarm(st, AlarmFailoverLineDown) {
		t.Errorf("after ack: unacked %v alarms %v", st.Unacked, st.Alarms)
	}
	s.cut[PathLAN2] = false
	s.run(300 * time.Millisecond)
	if st := s.nodes[1].e.Status(); hasAlarm(st, AlarmFailoverLineDown) {
		t.Errorf("alarm not cleared with the line back: %v", st.Alarms)
	}
}

func TestFailoverLineCutPolicyTakeover(t *testing.T) {
	m, sp := testConfig(ModeMain, 1), testConfig(ModeSpare, 2)
	sp.OnLineLoss = LineLossTakeover
	s := newSim(t, m, sp)
	s.boot(0)
	s.boot(1)
	s.run(time.Second)
	s.cut[PathLAN2] = true
	s.run(2 * time.Second)
	// The spare takes over (Kentix behaviour); the main hears its higher
	// epoch on LAN 1 and steps down, so the pair still has one primary.
	s.wantRoles(RoleSecondary, RolePrimary)
	// And it stays that way: no node takes the role back and forth.
	changes := len(s.nodes[0].roles) + len(s.nodes[1].roles)
	s.run(3 * time.Second)
	s.wantRoles(RoleSecondary, RolePrimary)
	if n := len(s.nodes[0].roles) + len(s.nodes[1].roles) - changes; n != 0 {
		t.Errorf("%d role changes with the line still cut; epochs %d/%d", n, s.nodes[0].e.Status().Epoch, s.nodes[1].e.Status().Epoch)
	}
}

func TestFailoverLineCutPolicyTakeoverBothSides(t *testing.T) {
	m, sp := testConfig(ModeMain, 1), testConfig(ModeSpare, 2)
	m.OnLineLoss, sp.OnLineLoss = LineLossTakeover, LineLossTakeover
	s := newSim(t, m, sp)
	s.boot(0)
	s.boot(1)
	s.run(time.Second)
	s.cut[PathLAN2] = true
	s.run(5 * time.Second)
	if e := s.nodes[1].e.Status().Epoch; e > 3 {
		t.Fatalf("epoch %d after a cut line: the nodes took the role from each other", e)
	}
	if (s.role(0) == RolePrimary) == (s.role(1) == RolePrimary) {
		t.Fatalf("roles %s/%s, want exactly one primary", s.role(0), s.role(1))
	}
	s.cut[PathLAN2] = false
	s.run(time.Second)
	if (s.role(0) == RolePrimary) == (s.role(1) == RolePrimary) {
		t.Fatalf("roles %s/%s after the line returned", s.role(0), s.role(1))
	}
}

func TestProbeFindsAddressHeld(t *testing.T) {
	// The spare's LAN 2 and LAN 1 frames are lost (a deaf spare), but the
	// main still holds the address: the probe stops the takeover.
	s := formedPair(t)
	s.nodes[0].faulty = func(a Action) bool { _, ok := a.(Send); return ok }
	s.run(2 * time.Second)
	if s.role(1) != RoleSecondary {
		t.Fatalf("spare took over an address that answers ARP\n%s", s.trace())
	}
	if st := s.nodes[1].e.Status(); !hasAlarm(st, AlarmAddressInUse) {
		t.Errorf("alarms %v, want address-in-use", st.Alarms)
	}
	if s.nodes[1].probes < 2 {
		t.Errorf("probes = %d, want repeated probes", s.nodes[1].probes)
	}
	s.nodes[0].faulty = nil
	s.run(time.Second)
	if st := s.nodes[1].e.Status(); hasAlarm(st, AlarmAddressInUse) {
		t.Errorf("address-in-use not cleared: %v", st.Alarms)
	}
}

func TestWitness(t *testing.T) {
	m, sp := testConfig(ModeMain, 1), testConfig(ModeSpare, 2)
	m.Witness, sp.Witness = true, true
	s := newSim(t, m, sp)
	s.boot(0)
	s.boot(1)
	s.run(time.Second)
	// Without a witness answer, nobody is primary.
	s.wantRoles(RoleSecondary, RoleSecondary)
	s.step(0, WitnessChanged{Reachable: true})
	s.step(1, WitnessChanged{Reachable: true})
	s.run(time.Second)
	s.wantRoles(RolePrimary, RoleSecondary)
	// The main loses the witness: it steps down and the spare takes over.
	s.step(0, WitnessChanged{Reachable: false})
	if s.role(0) != RoleSecondary || s.nodes[0].holds {
		t.Fatalf("main kept primary without the witness")
	}
	s.run(2 * time.Second)
	s.wantRoles(RoleSecondary, RolePrimary)
	if st := s.nodes[0].e.Status(); !hasAlarm(st, AlarmWitnessLost) {
		t.Errorf("alarms %v", st.Alarms)
	}
	// The spare loses it too: it neither stays nor becomes primary.
	s.step(1, WitnessChanged{Reachable: false})
	s.run(2 * time.Second)
	s.wantRoles(RoleSecondary, RoleSecondary)
	s.step(0, WitnessChanged{Reachable: true})
	s.run(2 * time.Second)
	s.wantRoles(RolePrimary, RoleSecondary)
}

func TestNewerDataWinsAtBoot(t *testing.T) {
	s := pair(t)
	// The spare ran alone before: its current generation follows the main's.
	s.nodes[0].data = &DataChanged{State: DataUpToDate, Generation: 10, History: 5}
	s.nodes[1].data = &DataChanged{State: DataUpToDate, Generation: 11, History: 10}
	s.boot(0)
	s.boot(1)
	s.run(time.Second)
	s.wantRoles(RoleSecondary, RolePrimary)
}

func TestOutdatedDataNeverPrimary(t *testing.T) {
	s := pair(t)
	s.boot(0)
	s.step(0, DataChanged{State: DataOutdated, Generation: 3})
	s.run(4 * time.Second)
	if s.role(0) == RolePrimary {
		t.Fatal("outdated node became primary")
	}
	if st := s.nodes[0].e.Status(); !hasAlarm(st, AlarmNoUpToDateData) {
		t.Errorf("alarms %v", st.Alarms)
	}
	// The operator forces it.
	s.step(0, CommandIssued{Cmd: CmdForceTakeover})
	if s.role(0) != RolePrimary || !s.nodes[0].holds {
		t.Fatalf("forced takeover: role %s", s.role(0))
	}
	s.step(0, DataChanged{State: DataUpToDate, Generation: 4, History: 3})
	if st := s.nodes[0].e.Status(); hasAlarm(st, AlarmNoUpToDateData) {
		t.Errorf("alarm not cleared: %v", st.Alarms)
	}
}

func TestSpareWithInconsistentDataDoesNotTakeOver(t *testing.T) {
	s := formedPair(t)
	s.step(1, DataChanged{State: DataInconsistent})
	s.powerOff(0)
	s.run(3 * time.Second)
	if s.role(1) == RolePrimary {
		t.Fatal("inconsistent spare took over")
	}
}

func TestRestartKeepsEpoch(t *testing.T) {
	s := formedPair(t)
	s.powerOff(0)
	s.run(2 * time.Second) // spare primary, epoch 2
	s.powerOff(1)
	s.boot(1)
	if e := s.nodes[1].e.Status().Epoch; e != 2 {
		t.Fatalf("restarted spare epoch %d, want 2", e)
	}
	s.run(3 * time.Second)
	if e := s.nodes[1].e.Status().Epoch; e != 3 || s.role(1) != RolePrimary {
		t.Fatalf("spare after restart: %s epoch %d", s.role(1), e)
	}
}

func TestFaultAndHealthCheck(t *testing.T) {
	s := formedPair(t)
	s.step(0, FaultChanged{Reason: "datastore-missing", Active: true})
	if s.role(0) != RoleFault || s.nodes[0].holds {
		t.Fatalf("main in fault still %s", s.role(0))
	}
	// The spare hears a live peer in fault: nobody is primary, so it is elected.
	s.run(2 * time.Second)
	s.wantRoles(RoleFault, RolePrimary)
	s.step(0, FaultChanged{Reason: "datastore-missing", Active: false})
	s.run(time.Second)
	if s.role(0) != RoleSecondary {
		t.Fatalf("main after fault cleared: %s", s.role(0))
	}
	// A failing check on the primary hands over to the healthy peer.
	s.step(1, CheckChanged{Name: "app", Healthy: false})
	s.run(time.Second)
	s.wantRoles(RolePrimary, RoleSecondary)
	if st := s.nodes[1].e.Status(); !hasAlarm(st, AlarmCheckFailed) {
		t.Errorf("alarms %v", st.Alarms)
	}
}

func TestVersionChecks(t *testing.T) {
	m, sp := testConfig(ModeMain, 1), testConfig(ModeSpare, 2)
	sp.Software = "1.1.0"
	s := newSim(t, m, sp)
	s.boot(0)
	s.boot(1)
	s.run(time.Second)
	// A different software version is a warning; the pair still forms.
	s.wantRoles(RolePrimary, RoleSecondary)
	if st := s.nodes[1].e.Status(); !hasAlarm(st, AlarmVersionMismatch) {
		t.Errorf("alarms %v", st.Alarms)
	}
	// An incompatible protocol: alarm, and no takeover while it is heard.
	s.nodes[0].faulty = func(a Action) bool { _, ok := a.(Send); return ok }
	for range 30 {
		s.step(1, PeerIncompatible{Path: PathLAN2, Version: 9})
		s.run(100 * time.Millisecond)
	}
	if s.role(1) != RoleSecondary {
		t.Fatalf("spare took over from a peer of another protocol")
	}
	if st := s.nodes[1].e.Status(); !hasAlarm(st, AlarmIncompatiblePeer) {
		t.Errorf("alarms %v", st.Alarms)
	}
}

func TestLossyLinkNoFalseTakeover(t *testing.T) {
	s := pair(t)
	s.drop = 20
	s.delay = 20 * time.Millisecond
	s.boot(0)
	s.boot(1)
	s.run(60 * time.Second)
	s.wantRoles(RolePrimary, RoleSecondary)
	if n := len(s.nodes[1].roles); n != 1 {
		t.Errorf("spare changed role %d times on a lossy link", n)
	}
}

func TestLostReleaseIsRecovered(t *testing.T) {
	s := formedPair(t)
	// Drop the RELEASE frames: nobody is primary until the election.
	s.nodes[0].faulty = func(a Action) bool { x, ok := a.(Send); return ok && x.Info.Kind == FrameRelease }
	s.step(0, CommandIssued{Cmd: CmdSwap})
	_, ok := s.runUntil(3*time.Second, func() bool { return s.role(0) == RolePrimary || s.role(1) == RolePrimary })
	if !ok {
		t.Fatalf("no primary after a lost RELEASE\n%s", s.trace())
	}
}

func TestDuplicateNodeID(t *testing.T) {
	s := newSim(t, testConfig(ModeMain, 7), testConfig(ModeSpare, 7))
	s.boot(0)
	s.boot(1)
	s.run(100 * time.Millisecond)
	if st := s.nodes[0].e.Status(); !hasAlarm(st, AlarmDuplicateNodeID) {
		t.Errorf("alarms %v", st.Alarms)
	}
}

// A primary that loses its peer starts a new data generation (the mirror
// then finds a split brain if the peer took over and wrote); a secondary
// that loses its primary starts one only when it takes over.
func TestPrimaryLosingPeerStartsGeneration(t *testing.T) {
	newGen := func(acts []Action) int {
		n := 0
		for _, a := range acts {
			if m, ok := a.(SetMirrorRole); ok && m.Primary && m.NewGeneration {
				n++
			}
		}
		return n
	}
	s := formedPair(t)
	s.wantRoles(RolePrimary, RoleSecondary)
	s.nodes[0].actions, s.nodes[1].actions = nil, nil
	s.cut[PathLAN2], s.cut[PathLAN1] = true, true // the main cut off at the switch
	s.run(2 * time.Second)
	if n := newGen(s.nodes[0].actions); n != 1 {
		t.Errorf("the primary that lost its peer started %d generations, want 1\n%s", n, s.trace())
	}
	if s.role(0) != RolePrimary {
		t.Fatalf("main is %s, want still primary (no witness)", s.role(0))
	}
	if s.role(1) == RolePrimary && newGen(s.nodes[1].actions) != 1 {
		t.Errorf("the spare took over with %d new generations, want 1", newGen(s.nodes[1].actions))
	}
	// The power loss of the main: the spare starts exactly one generation,
	// at its takeover.
	s = formedPair(t)
	s.nodes[1].actions = nil
	s.powerOff(0)
	s.run(2 * time.Second)
	if s.role(1) != RolePrimary || newGen(s.nodes[1].actions) != 1 {
		t.Errorf("spare %s with %d new generations, want primary with 1", s.role(1), newGen(s.nodes[1].actions))
	}
}
