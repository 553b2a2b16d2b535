package engine

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func arbiterConfig(mode Mode, id uint64) Config {
	c := testConfig(mode, id)
	c.Arbiter = ArbiterConfig{Enabled: true, ReleaseMargin: DefaultReleaseMargin}
	return c
}

// drive runs one engine alone: probes find the address free, epochs are
// reserved at once, the peer is whatever the test feeds.
type drive struct {
	t    *testing.T
	e    *Engine
	now  time.Duration
	acts []Action
	due  []delivery
}

func newDrive(t *testing.T, cfg Config) *drive {
	t.Helper()
	e, err := New(cfg, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	d := &drive{t: t, e: e}
	d.take(e.Start(0))
	return d
}

func (d *drive) take(acts []Action) {
	for _, a := range acts {
		d.acts = append(d.acts, a)
		switch a := a.(type) {
		case StartProbe:
			d.due = append(d.due, delivery{at: d.now + d.e.cfg.ProbeTimeout, ev: ProbeDone{}})
		case ReserveEpoch:
			d.due = append(d.due, delivery{at: d.now, ev: EpochReserved{Epoch: a.Epoch}})
		}
	}
}

func (d *drive) step(ev Event) { d.take(d.e.Step(d.now, ev)) }

// to ticks every millisecond up to t, delivering what falls due.
func (d *drive) to(t time.Duration) {
	for d.now < t {
		d.now += time.Millisecond
		due := d.due
		d.due = nil
		for _, q := range due {
			if q.at <= d.now {
				d.step(q.ev)
			} else {
				d.due = append(d.due, q)
			}
		}
		d.take(d.e.Tick(d.now))
	}
}

// wants returns the WantLease actions so far.
func (d *drive) wants() []bool {
	var w []bool
	for _, a := range d.acts {
		if wl, ok := a.(WantLease); ok {
			w = append(w, wl.Want)
		}
	}
	return w
}

// peerFrame feeds a heartbeat of a peer in role r on LAN 2.
func (d *drive) peerFrame(mode Mode, id uint64, r Role, epoch uint64) {
	d.step(FrameReceived{Path: PathLAN2, Peer: PeerInfo{Kind: FrameHeartbeat, NodeID: id, Mode: mode, Role: r,
		Nonce: 0x5000 + id, Echo: d.e.cfg.Nonce, Eligible: true, Epoch: epoch, Data: DataUpToDate, Software: "1.0.0"}})
}

func TestLeaseRules(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"alone: asks before connection-wait ends, primary only with a lease, releases before its end", func(t *testing.T) {
			d := newDrive(t, arbiterConfig(ModeMain, 1))
			d.to(1499 * time.Millisecond)
			if len(d.wants()) != 0 {
				t.Fatalf("asked %v before connection-wait - failover-time", d.wants())
			}
			d.to(1500 * time.Millisecond)
			if !slices.Equal(d.wants(), []bool{true}) {
				t.Fatalf("wants %v at connection-wait - failover-time", d.wants())
			}
			d.to(2500 * time.Millisecond)
			if d.e.Role() == RolePrimary || d.e.Status().Arbiter.State != "asking" ||
				slices.ContainsFunc(d.acts, func(a Action) bool { _, ok := a.(ClaimAddress); return ok }) {
				t.Fatalf("role %s, arbiter %+v without a lease; actions %v", d.e.Role(), d.e.Status().Arbiter, d.acts)
			}
			d.step(LeaseChanged{State: LeaseGranted, Until: 3500 * time.Millisecond, Holder: 1, Epoch: 1})
			d.to(2600 * time.Millisecond)
			if d.e.Role() != RolePrimary {
				t.Fatalf("role %s with a lease", d.e.Role())
			}
			if st := d.e.Status().Arbiter; st.State != "granted" || st.Holder != 1 || st.LeaseMS != 900 {
				t.Errorf("status %+v", st)
			}
			d.acts = nil
			d.to(3399 * time.Millisecond)
			if d.e.Role() != RolePrimary {
				t.Fatal("stepped down before the release margin")
			}
			d.to(3400 * time.Millisecond)
			if st := d.e.Status().Arbiter; st.State != "granted" || st.LeaseMS != 100 {
				t.Errorf("status at the release margin %+v", st)
			}
			if d.e.Role() != RoleSecondary || !before(d.acts, ReleaseAddress{}, RoleChanged{}) {
				t.Fatalf("role %s at lease end - margin; actions %v", d.e.Role(), d.acts)
			}
			d.to(3500 * time.Millisecond)
			if st := d.e.Status().Arbiter; st.State != "expired" || st.LeaseMS != 0 {
				t.Errorf("status after the lease %+v", st)
			}
			// Still without its peer: it keeps asking.
			if w := d.wants(); len(w) != 0 {
				t.Errorf("wants changed to %v", w)
			}
		}},
		{"renewals keep a primary without its peer", func(t *testing.T) {
			d := newDrive(t, arbiterConfig(ModeMain, 1))
			d.step(LeaseChanged{State: LeaseGranted, Until: 10 * time.Second})
			d.to(1600 * time.Millisecond)
			d.step(LeaseChanged{State: LeaseGranted, Until: 10 * time.Second})
			for at := 3 * time.Second; at < 20*time.Second; at += 250 * time.Millisecond {
				d.to(at)
				d.step(LeaseChanged{State: LeaseGranted, Until: at + 750*time.Millisecond})
			}
			if d.e.Role() != RolePrimary || len(d.e.Status().Alarms) != 0 {
				t.Fatalf("role %s, alarms %v", d.e.Role(), d.e.Status().Alarms)
			}
			// A denial (the arbiter restarted and lost its state) does not
			// shorten the lease.
			d.step(LeaseChanged{State: LeaseDenied, Until: d.now + 700*time.Millisecond, Reason: "starting"})
			d.to(d.now + 500*time.Millisecond)
			if d.e.Role() != RolePrimary {
				t.Fatal("a denial shortened the lease")
			}
			d.to(d.now + 200*time.Millisecond)
			if d.e.Role() != RoleSecondary {
				t.Fatal("primary after the lease")
			}
		}},
		{"with the peer heard, a lost arbiter is only an alarm", func(t *testing.T) {
			d := newDrive(t, arbiterConfig(ModeMain, 1))
			for at := time.Duration(0); at < 5*time.Second; at += 50 * time.Millisecond {
				d.to(at)
				d.peerFrame(ModeSpare, 2, RoleSecondary, d.e.Status().Epoch)
			}
			if d.e.Role() != RolePrimary {
				t.Fatalf("role %s", d.e.Role())
			}
			if !slices.Equal(d.wants(), []bool{true}) {
				t.Fatalf("wants %v: a primary asks for a lease", d.wants())
			}
			d.step(LeaseChanged{State: LeaseUnreachable})
			for at := d.now; at < 10*time.Second; at += 50 * time.Millisecond {
				d.to(at)
				d.peerFrame(ModeSpare, 2, RoleSecondary, d.e.Status().Epoch)
			}
			st := d.e.Status()
			if st.Role != RolePrimary || !hasAlarm(st, AlarmArbiterLost) || st.Arbiter.State != "unreachable" {
				t.Fatalf("role %s alarms %v arbiter %+v", st.Role, st.Alarms, st.Arbiter)
			}
			// The peer falls silent: without a lease, the primary steps
			// down as soon as the peer is down.
			d.acts = nil
			d.to(d.now + d.e.cfg.FailoverTime)
			if d.e.Role() != RoleSecondary {
				t.Fatalf("role %s without peer and lease", d.e.Role())
			}
			d.step(LeaseChanged{State: LeaseDenied, Holder: 0})
			if hasAlarm(d.e.Status(), AlarmArbiterLost) {
				t.Error("the alarm stays after an answer")
			}
		}},
		{"a secondary asks only without its peer, and stops when it hears it", func(t *testing.T) {
			d := newDrive(t, arbiterConfig(ModeSpare, 2))
			for at := time.Duration(0); at < 3*time.Second; at += 50 * time.Millisecond {
				d.to(at)
				d.peerFrame(ModeMain, 1, RolePrimary, 1)
			}
			if d.e.Role() != RoleSecondary || len(d.wants()) != 0 {
				t.Fatalf("role %s wants %v", d.e.Role(), d.wants())
			}
			d.to(d.now + 600*time.Millisecond)
			if !slices.Equal(d.wants(), []bool{true}) {
				t.Fatalf("wants %v after the peer fell silent", d.wants())
			}
			// Denied: the main holds. Its lease may just run out (it died),
			// but when it renews, it is alive and unheard.
			d.step(LeaseChanged{State: LeaseDenied, Holder: 1, Epoch: 1, Reason: "held", HolderFor: 900 * time.Millisecond})
			d.to(d.now + 800*time.Millisecond)
			d.step(LeaseChanged{State: LeaseDenied, Holder: 1, Epoch: 1, Reason: "held", HolderFor: 100 * time.Millisecond})
			if hasAlarm(d.e.Status(), AlarmFailoverLineDown) {
				t.Fatal("alarm while the peer's lease only runs out")
			}
			d.to(d.now + 200*time.Millisecond)
			d.step(LeaseChanged{State: LeaseDenied, Holder: 1, Epoch: 1, Reason: "held", HolderFor: 1100 * time.Millisecond})
			d.to(d.now + 3*time.Second)
			st := d.e.Status()
			if st.Role != RoleSecondary || !hasAlarm(st, AlarmFailoverLineDown) {
				t.Fatalf("role %s alarms %v", st.Role, st.Alarms)
			}
			d.peerFrame(ModeMain, 1, RolePrimary, 1)
			d.to(d.now + time.Millisecond)
			if !slices.Equal(d.wants(), []bool{true, false}) {
				t.Fatalf("wants %v after the peer came back", d.wants())
			}
			// A late grant of a lease no longer wanted is ignored.
			d.step(LeaseChanged{State: LeaseGranted, Until: d.now + time.Second, Holder: 2})
			if st := d.e.Status().Arbiter; st.State != "idle" || st.LeaseMS != 0 {
				t.Errorf("arbiter %+v after a late grant", st)
			}
		}},
		{"a forced primary stays without a lease", func(t *testing.T) {
			d := newDrive(t, arbiterConfig(ModeSpare, 2))
			d.to(3 * time.Second)
			d.step(CommandIssued{Cmd: CmdForceTakeover})
			d.to(6 * time.Second)
			if d.e.Role() != RolePrimary {
				t.Fatalf("role %s", d.e.Role())
			}
		}},
		{"a reload that removes the arbiter stops asking", func(t *testing.T) {
			d := newDrive(t, arbiterConfig(ModeMain, 1))
			d.to(1600 * time.Millisecond)
			d.step(LeaseChanged{State: LeaseUnreachable})
			if err := d.e.Reconfigure(testConfig(ModeMain, 1)); err != nil {
				t.Fatal(err)
			}
			d.to(3 * time.Second)
			st := d.e.Status()
			if !slices.Equal(d.wants(), []bool{true, false}) || st.Role != RolePrimary || hasAlarm(st, AlarmArbiterLost) {
				t.Fatalf("wants %v role %s alarms %v", d.wants(), st.Role, st.Alarms)
			}
		}},
		{"without an arbiter nothing changes", func(t *testing.T) {
			d := newDrive(t, testConfig(ModeMain, 1))
			d.step(LeaseChanged{State: LeaseUnreachable})
			d.to(3 * time.Second)
			st := d.e.Status()
			if st.Role != RolePrimary || len(d.wants()) != 0 || st.Arbiter.State != "off" || len(st.Alarms) != 0 {
				t.Fatalf("role %s wants %v status %+v", st.Role, d.wants(), st)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, tc.run)
	}
}

func TestLeaseValidate(t *testing.T) {
	for _, margin := range []time.Duration{0, -time.Millisecond, 500 * time.Millisecond} {
		c := arbiterConfig(ModeMain, 1)
		c.Arbiter.ReleaseMargin = margin
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "arbiter.release-margin") {
			t.Errorf("margin %v: %v", margin, err)
		}
	}
	if c := arbiterConfig(ModeMain, 1); c.Validate() != nil {
		t.Error(c.Validate())
	}
}

func TestLeaseStateNames(t *testing.T) {
	for i, want := range []string{"invalid", "granted", "denied", "unreachable"} {
		if got := LeaseState(i).String(); got != want {
			t.Errorf("%d: %s", i, got)
		}
	}
	mustPanic(t, "invalid lease state", func() {
		d := newDrive(t, arbiterConfig(ModeMain, 1))
		d.to(1600 * time.Millisecond)
		d.step(LeaseChanged{})
	})
}
