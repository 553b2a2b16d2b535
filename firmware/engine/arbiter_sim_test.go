package engine

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/pairguard/pairguard/firmware/arbiter"
)

// Whole-pair stories with an arbiter: the two engines of sim, each with the
// real lease client of firmware/arbiter, and the real arbiter core, talking
// in authenticated datagrams over a simulated network.

type arbSim struct {
	*sim
	key     *arbiter.Key
	core    *arbiter.Core
	arbCfg  arbiter.Config
	arbBase time.Duration // the arbiter's clock = sim time + arbBase
	arbDown bool
	cutArb  [2]bool          // node i cannot reach the arbiter (both ways)
	slow    [2]time.Duration // extra delay of the replies to node i
	clients [2]*arbiter.Client
	engines [2]*Engine // the engine each client belongs to (a reboot makes a new one)
	seen    [2]int     // actions of node i already looked at
	flights []arbFlight
	grants  [2][]time.Duration // when each node's engine saw a grant
	// primaries: for every millisecond, which nodes were primary.
	bothPrimary time.Duration
}

type arbFlight struct {
	at    time.Duration
	toArb bool
	node  int
	b     []byte
}

func newArbSim(t *testing.T) *arbSim {
	s := newSim(t, arbiterConfig(ModeMain, 1), arbiterConfig(ModeSpare, 2))
	a := &arbSim{sim: s, key: arbiter.NewKey(arbiter.DeriveKey([]byte("sim pair key, long enough"))),
		arbCfg: arbiter.DefaultConfig(), arbBase: 40 * 365 * 24 * time.Hour}
	a.restartArbiter(false)
	return a
}

// restartArbiter starts the arbiter (again), with its saved state or without.
func (a *arbSim) restartArbiter(keepState bool) {
	var st *arbiter.State
	if keepState && a.core != nil {
		saved := a.core.State()
		st = &saved
	}
	core, err := arbiter.New(a.arbCfg, a.now+a.arbBase, st)
	if err != nil {
		a.t.Fatal(err)
	}
	core.AddPair(a.key.PairID())
	a.core = core
	a.arbDown = false
	a.flights = slices.DeleteFunc(a.flights, func(f arbFlight) bool { return f.toArb })
}

// formedArbPair boots both nodes, lets them form the pair and the main
// hold its lease (the arbiter's start wait included).
func formedArbPair(t *testing.T) *arbSim {
	a := newArbSim(t)
	a.boot(0)
	a.boot(1)
	a.run(8 * time.Second)
	a.wantRoles(RolePrimary, RoleSecondary)
	if st := a.nodes[0].e.Status().Arbiter; st.State != "granted" || st.Holder != 1 {
		t.Fatalf("main's arbiter status %+v", st)
	}
	if st := a.nodes[1].e.Status().Arbiter; st.State != "idle" {
		t.Fatalf("spare's arbiter status %+v", st)
	}
	return a
}

func (a *arbSim) client(i int) *arbiter.Client {
	n := a.nodes[i]
	if a.engines[i] != n.e {
		mode := arbiter.ModeMain
		if n.cfg.Mode == ModeSpare {
			mode = arbiter.ModeSpare
		}
		c, err := arbiter.NewClient(arbiter.ClientConfig{Key: a.key, Node: n.cfg.NodeID, Mode: mode,
			Lease: n.cfg.FailoverTime + arbiter.LeaseOverFailover, Rand: rand.NewChaCha8([32]byte{byte(i), byte(a.now)})})
		if err != nil {
			a.t.Fatal(err)
		}
		a.clients[i], a.engines[i] = c, n.e
	}
	return a.clients[i]
}

func info(st Status) arbiter.Info {
	r := map[Role]arbiter.Role{RoleStarting: arbiter.RoleStarting, RolePrimary: arbiter.RolePrimary,
		RoleSecondary: arbiter.RoleSecondary, RoleFault: arbiter.RoleFault}[st.Role]
	d := map[DataState]arbiter.Data{DataUpToDate: arbiter.DataUpToDate, DataOutdated: arbiter.DataOutdated,
		DataInconsistent: arbiter.DataInconsistent}[st.Data]
	return arbiter.Info{Role: r, Data: d, Epoch: st.Epoch, Generation: st.Generation, History: st.History,
		PeerHeard: st.Peer.State == PeerUp}
}

// event maps a lease client's event to the engine's.
func event(ev arbiter.Event) LeaseChanged {
	st := map[arbiter.EventKind]LeaseState{arbiter.EventGranted: LeaseGranted, arbiter.EventDenied: LeaseDenied,
		arbiter.EventUnreachable: LeaseUnreachable}[ev.Kind]
	reason := ""
	if ev.Kind == arbiter.EventDenied {
		reason = ev.Reason.String()
	}
	return LeaseChanged{State: st, Until: ev.Until, Holder: ev.Holder, Epoch: ev.Epoch, Reason: reason, HolderFor: ev.RetryAfter}
}

func (a *arbSim) lease(i int, ev arbiter.Event) {
	if ev.Kind == arbiter.EventGranted {
		a.grants[i] = append(a.grants[i], a.now)
	}
	a.step(i, event(ev))
}

// run advances the pair and the arbiter by d, a millisecond at a time.
func (a *arbSim) run(d time.Duration) {
	for end := a.now + d; a.now < end; {
		a.sim.run(tickStep)
		var due []arbFlight
		a.flights = slices.DeleteFunc(a.flights, func(f arbFlight) bool {
			if f.at <= a.now {
				due = append(due, f)
				return true
			}
			return false
		})
		for _, f := range due {
			a.deliver(f)
		}
		for i, n := range a.nodes {
			if n.down {
				continue
			}
			c := a.client(i)
			for _, act := range n.actions[a.seen[i]:] {
				if w, ok := act.(WantLease); ok {
					c.Want(a.now, w.Want)
				}
			}
			a.seen[i] = len(n.actions)
			if ev, ok := c.Tick(a.now); ok {
				a.lease(i, ev)
			}
			b, ok, err := c.Poll(a.now, info(n.e.Status()), nil)
			if err != nil {
				a.t.Fatal(err)
			}
			if ok {
				a.flights = append(a.flights, arbFlight{at: a.now + a.delay, toArb: true, node: i, b: b})
			}
		}
		if a.primary(0) && a.primary(1) {
			a.bothPrimary += tickStep
		}
	}
}

func (a *arbSim) deliver(f arbFlight) {
	if a.cutArb[f.node] || (f.toArb && a.arbDown) {
		return
	}
	if f.toArb {
		var req arbiter.Request
		if err := arbiter.DecodeRequest(f.b, a.key, &req); err != nil {
			a.t.Fatalf("arbiter refused: %v", err)
		}
		rep, _ := a.core.Handle(a.now+a.arbBase, req)
		b, err := rep.Append(nil, a.key)
		if err != nil {
			a.t.Fatal(err)
		}
		a.flights = append(a.flights, arbFlight{at: a.now + a.delay + a.slow[f.node], node: f.node, b: b})
		return
	}
	n := a.nodes[f.node]
	if n.down || a.engines[f.node] != n.e {
		return // a reply to a node that has since rebooted
	}
	ev, ok, err := a.clients[f.node].Receive(a.now, f.b)
	if err != nil {
		a.t.Fatalf("%s refused a reply: %v", n.name, err)
	}
	if ok {
		a.lease(f.node, ev)
	}
}

// primary reports whether node i is up and primary.
func (a *arbSim) primary(i int) bool { return !a.nodes[i].down && a.role(i) == RolePrimary }

// runUntil is sim.runUntil with the arbiter's traffic.
func (a *arbSim) runUntil(limit time.Duration, cond func() bool) (time.Duration, bool) {
	start := a.now
	for a.now-start < limit {
		if cond() {
			return a.now - start, true
		}
		a.run(tickStep)
	}
	return a.now - start, cond()
}

// isolate cuts both paths between the nodes.
func (a *arbSim) isolate() { a.cut[PathLAN1], a.cut[PathLAN2] = true, true }

func (a *arbSim) heal() {
	a.cut[PathLAN1], a.cut[PathLAN2] = false, false
	a.cutArb = [2]bool{}
}

func (a *arbSim) neverTwo() {
	a.t.Helper()
	if a.bothPrimary > 0 || a.claims > 0 {
		a.t.Fatalf("two primaries for %v, two holders of the address for %d ms\n%s", a.bothPrimary, a.claims, a.trace())
	}
}

// everPrimary reports whether node i became primary since its roles were
// last cleared.
func (a *arbSim) everPrimary(i int) bool {
	for _, r := range a.nodes[i].roles {
		if r.Role == RolePrimary {
			return true
		}
	}
	return false
}

func TestArbiterPartitionBothReachIt(t *testing.T) {
	a := formedArbPair(t)
	a.nodes[1].roles = nil
	a.isolate()
	a.run(10 * time.Second)
	a.neverTwo()
	a.wantRoles(RolePrimary, RoleSecondary)
	if a.everPrimary(1) {
		t.Fatalf("the spare became primary\n%s", a.trace())
	}
	sp := a.nodes[1].e.Status()
	if !hasAlarm(sp, AlarmFailoverLineDown) || sp.Arbiter.State != "denied" || sp.Arbiter.Holder != 1 {
		t.Errorf("spare: alarms %v arbiter %+v", sp.Alarms, sp.Arbiter)
	}
	// Healed: the spare stops asking, nothing else changes.
	a.heal()
	a.run(2 * time.Second)
	a.wantRoles(RolePrimary, RoleSecondary)
	if st := a.nodes[1].e.Status(); st.Arbiter.State != "idle" || hasAlarm(st, AlarmFailoverLineDown) {
		t.Errorf("spare after healing: %+v %v", st.Arbiter, st.Alarms)
	}
	a.neverTwo()
}

func TestArbiterIsolatedMain(t *testing.T) {
	a := formedArbPair(t)
	a.isolate()
	a.cutArb[0] = true
	cut := a.now
	var released time.Duration
	took, ok := a.runUntil(10*time.Second, func() bool {
		if released == 0 && !a.nodes[0].holds {
			released = a.now
		}
		return a.role(1) == RolePrimary
	})
	if !ok {
		t.Fatalf("the spare did not take over\n%s", a.trace())
	}
	a.neverTwo()
	if a.role(0) == RolePrimary || released == 0 || released >= a.nodes[1].takeover {
		t.Fatalf("main %s, released at %v, spare claimed at %v", a.role(0), released-cut, a.nodes[1].takeover-cut)
	}
	cfg := a.nodes[1].cfg
	lease := cfg.FailoverTime + arbiter.LeaseOverFailover
	if limit := lease + cfg.FailoverTime + time.Second; took > limit {
		t.Errorf("takeover %v after the cut, want at most lease + failover-time + 1 s = %v", took, limit)
	}
	t.Logf("main released %v after the cut, spare primary after %v", released-cut, took)
	a.run(5 * time.Second)
	a.neverTwo()
	// The main comes back: it follows the spare, the primary.
	a.heal()
	a.run(5 * time.Second)
	a.neverTwo()
	// One primary (the main again, by automatic recovery).
	if a.primary(0) == a.primary(1) {
		t.Fatalf("after healing: %s/%s", a.role(0), a.role(1))
	}
}

func TestArbiterMainPowerLoss(t *testing.T) {
	for off := time.Duration(0); off < 250*time.Millisecond; off += 50 * time.Millisecond {
		a := formedArbPair(t)
		a.run(off) // every phase of the renewal
		a.powerOff(0)
		died := a.now
		took, ok := a.runUntil(5*time.Second, func() bool { return a.role(1) == RolePrimary })
		if !ok {
			t.Fatalf("no takeover\n%s", a.trace())
		}
		_ = died
		cfg := a.nodes[1].cfg
		if limit := cfg.FailoverTime + time.Second; took > limit {
			t.Errorf("offset %v: takeover after %v, want at most failover-time + 1 s = %v", off, took, limit)
		}
		if off == 0 {
			t.Logf("power loss: takeover after %v", took)
		}
	}
}

func TestArbiterRestart(t *testing.T) {
	for _, keep := range []bool{true, false} {
		t.Run(fmt.Sprintf("state kept %v", keep), func(t *testing.T) {
			a := formedArbPair(t)
			a.arbDown = true
			a.run(300 * time.Millisecond)
			a.restartArbiter(keep)
			// With the peer heard nothing changes, whatever the arbiter says.
			a.run(10 * time.Second)
			a.wantRoles(RolePrimary, RoleSecondary)
			if st := a.nodes[0].e.Status().Arbiter; st.State != "granted" || st.Holder != 1 {
				t.Fatalf("main's arbiter status %+v", st)
			}
			// And the lease works again: the spare's takeover after a
			// power loss of the main.
			a.powerOff(0)
			if _, ok := a.runUntil(5*time.Second, func() bool { return a.role(1) == RolePrimary }); !ok {
				t.Fatalf("no takeover after the arbiter restart\n%s", a.trace())
			}
			a.neverTwo()
		})
	}
}

func TestArbiterRestartDuringPartition(t *testing.T) {
	// The arbiter restarts without its state while the nodes cannot hear
	// each other: nobody is primary during its wait, then one is.
	a := formedArbPair(t)
	a.isolate()
	a.run(2 * time.Second)
	a.arbDown = true
	a.run(500 * time.Millisecond)
	a.restartArbiter(false)
	a.run(15 * time.Second)
	a.neverTwo()
	if a.role(0) != RolePrimary && a.role(1) != RolePrimary {
		t.Fatalf("no primary after the arbiter's wait: %s/%s\n%s", a.role(0), a.role(1), a.trace())
	}
}

func TestArbiterDownThenPeerDown(t *testing.T) {
	a := formedArbPair(t)
	a.arbDown = true
	a.run(3 * time.Second)
	// With the peer heard: only an alarm.
	a.wantRoles(RolePrimary, RoleSecondary)
	if st := a.nodes[0].e.Status(); !hasAlarm(st, AlarmArbiterLost) || st.Arbiter.State != "unreachable" {
		t.Fatalf("main: alarms %v arbiter %+v", st.Alarms, st.Arbiter)
	}
	// Then the spare dies: the main cannot tell a dead spare from its own
	// isolation, so it steps down (no lease) and nobody serves...
	a.powerOff(1)
	a.run(3 * time.Second)
	a.neverTwo()
	if a.role(0) == RolePrimary {
		t.Fatalf("the main stayed primary without its peer and without a lease\n%s", a.trace())
	}
	// ...until the arbiter is back.
	a.restartArbiter(true)
	if _, ok := a.runUntil(10*time.Second, func() bool { return a.role(0) == RolePrimary }); !ok {
		t.Fatalf("the main did not return once the arbiter was back\n%s", a.trace())
	}
}

func TestArbiterClockSteps(t *testing.T) {
	// The arbiter's clock has nothing in common with the nodes' (another
	// boot, another epoch of the wall clock): leases are durations.
	a := newArbSim(t)
	a.run(time.Minute)
	a.arbBase = -a.now - 20*365*24*time.Hour // another boot, another base
	a.restartArbiter(false)
	a.boot(0)
	a.boot(1)
	a.run(8 * time.Second)
	a.wantRoles(RolePrimary, RoleSecondary)
	// A step back of the arbiter's input (a caller bug; the server reads a
	// monotonic clock) is no time passed: no second grant, no takeover
	// while it lasts, and the holder keeps its lease.
	a.arbBase -= 30 * time.Second
	a.isolate()
	a.run(5 * time.Second)
	a.neverTwo()
	a.wantRoles(RolePrimary, RoleSecondary)
	// A power loss of the main while the arbiter's clock is stuck: no
	// takeover until it has caught up, never two primaries.
	a.heal()
	a.run(time.Second)
	a.powerOff(0)
	a.run(40 * time.Second)
	a.neverTwo()
	if a.role(1) != RolePrimary {
		t.Fatalf("no takeover once the arbiter's clock caught up\n%s", a.trace())
	}
}

func TestArbiterDelayedGrants(t *testing.T) {
	for _, slow := range []time.Duration{300 * time.Millisecond, 1100 * time.Millisecond} {
		t.Run(slow.String(), func(t *testing.T) {
			a := formedArbPair(t)
			// The main is cut off; the grants to the spare are slow.
			a.slow[1] = slow
			a.isolate()
			a.cutArb[0] = true
			a.run(10 * time.Second)
			a.neverTwo()
			lease := a.nodes[1].cfg.FailoverTime + arbiter.LeaseOverFailover
			if slow >= lease-DefaultReleaseMargin {
				// Every grant arrives after its lease has ended (measured
				// from the request): useless, so no takeover.
				if a.everPrimary(1) {
					t.Fatalf("the spare used a grant that arrived after its lease\n%s", a.trace())
				}
				return
			}
			if a.role(1) != RolePrimary {
				t.Fatalf("no takeover with grants %v late\n%s", slow, a.trace())
			}
		})
	}
}
