package engine

import (
	"fmt"

	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		want   string // substring of the error; "" for valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"bad mode", func(c *Config) { c.Mode = 0 }, "mode"},
		{"bad recovery", func(c *Config) { c.Recovery = 9 }, "recovery"},
		{"bad line loss", func(c *Config) { c.OnLineLoss = 0 }, "on-line-loss"},
		{"zero interval", func(c *Config) { c.Interval = 0 }, "heartbeat.interval"},
		{"failover too short", func(c *Config) { c.FailoverTime = c.Interval }, "heartbeat.failover-time"},
		{"lan1 too slow", func(c *Config) { c.LAN1Interval = c.FailoverTime }, "heartbeat.lan1-interval"},
		{"wait too short", func(c *Config) { c.ConnectionWait = c.Interval }, "connection-wait-time"},
		{"probe too long", func(c *Config) { c.ProbeTimeout = c.FailoverTime }, "probe-time"},
		{"zero node id", func(c *Config) { c.NodeID = 0 }, "node id"},
		{"independent skips timers", func(c *Config) { c.Mode = ModeIndependent; c.Interval = 0 }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testConfig(ModeMain, 1)
			tt.change(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want an error naming %q", err, tt.want)
			}
			if _, err := New(c, 0, 0); err == nil {
				t.Fatal("New accepted an invalid config")
			}
		})
	}
}

func TestEnums(t *testing.T) {
	for _, name := range []string{"independent", "main", "spare"} {
		m, err := ParseMode(name)
		if err != nil || m.String() != name {
			t.Errorf("ParseMode(%q) = %v, %v", name, m, err)
		}
	}
	if _, err := ParseMode("invalid"); err == nil {
		t.Error("ParseMode accepted the invalid zero value's name")
	}
	if _, err := ParseMode("master"); err == nil || !strings.Contains(err.Error(), "mode") {
		t.Errorf("ParseMode(master) error = %v", err)
	}
	if r, err := ParseRecovery("manual"); err != nil || r != RecoveryManual || r.String() != "manual" {
		t.Errorf("ParseRecovery = %v, %v", r, err)
	}
	if l, err := ParseLineLoss("takeover"); err != nil || l != LineLossTakeover || l.String() != "takeover" {
		t.Errorf("ParseLineLoss = %v, %v", l, err)
	}
	if got := Role(42).String(); got != "Role(42)" {
		t.Errorf("Role(42) = %q", got)
	}
	checks := []struct {
		got, want string
	}{
		{PeerUp.String(), "up"}, {DataInconsistent.String(), "inconsistent"},
		{MirrorSplitBrain.String(), "split-brain"}, {PathLAN1.String(), "lan1"},
		{FrameRelease.String(), "release"}, {CmdSwap.String(), "swap"},
		{RolePrimary.String(), "primary"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("String() = %q, want %q", c.got, c.want)
		}
	}
	if roleInvalid.Valid() || !RoleStandalone.Valid() || dataInvalid.Valid() || !DataOutdated.Valid() ||
		mirrorInvalid.Valid() || !MirrorInSync.Valid() {
		t.Error("Valid() wrong at the edges")
	}
}

func TestStandalone(t *testing.T) {
	c := testConfig(ModeIndependent, 1)
	e, err := New(c, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	acts := e.Start(0)
	if !slices.ContainsFunc(acts, func(a Action) bool { _, ok := a.(ClaimAddress); return ok }) {
		t.Fatalf("standalone did not claim the address: %v", acts)
	}
	if e.Role() != RoleStandalone {
		t.Fatalf("role %s", e.Role())
	}
	if acts := e.Tick(time.Second); len(acts) != 0 {
		t.Errorf("standalone ticks act: %v", acts)
	}
	if acts := e.Step(time.Second, CommandIssued{Cmd: CmdSwap}); len(acts) != 0 {
		t.Errorf("standalone steps act: %v", acts)
	}
}

func TestReconfigure(t *testing.T) {
	c := testConfig(ModeMain, 1)
	e, _ := New(c, 0, 0)
	c2 := c
	c2.FailoverTime = time.Second
	c2.Witness = true
	if err := e.Reconfigure(c2); err != nil {
		t.Fatal(err)
	}
	if e.Status().Witness {
		t.Error("witness reachable before any answer after enabling it")
	}
	c3 := c2
	c3.Mode = ModeSpare
	if err := e.Reconfigure(c3); err == nil {
		t.Error("mode change accepted live")
	}
	c4 := c2
	c4.Interval = 0
	if err := e.Reconfigure(c4); err == nil {
		t.Error("invalid config accepted live")
	}
}

func TestHeartbeatSchedule(t *testing.T) {
	e, _ := New(testConfig(ModeMain, 1), 0, 0)
	var lan2, lan1 int
	count := func(acts []Action) {
		for _, a := range acts {
			if s, ok := a.(Send); ok && s.Info.Kind == FrameHeartbeat {
				if s.LAN2 {
					lan2++
				}
				if s.LAN1 {
					lan1++
				}
			}
		}
	}
	count(e.Start(0))
	for now := time.Millisecond; now <= time.Second; now += time.Millisecond {
		count(e.Tick(now))
	}
	// 100 ms on LAN 2, 200 ms on LAN 1, plus the one at start.
	if lan2 != 11 || lan1 != 6 {
		t.Errorf("heartbeats in 1 s: lan2 %d lan1 %d, want 11 and 6", lan2, lan1)
	}
}

// At 2 ms x 3 the LAN 1 interval (2/5 of failover-time, 2.4 ms) is not a
// multiple of the LAN 2 interval: each LAN 1 heartbeat goes out with a LAN 2
// one, early rather than late, so both paths cost the daemon one wake-up.
func TestLAN1HeartbeatsRideWithLAN2(t *testing.T) {
	cfg := testConfig(ModeMain, 1)
	cfg.Interval, cfg.LAN1Interval, cfg.FailoverTime = 2*time.Millisecond, 2400*time.Microsecond, 6*time.Millisecond
	cfg.ProbeTimeout = time.Millisecond
	e, _ := New(cfg, 0, 0)
	var sends, lan1 int
	last1 := time.Duration(0)
	check := func(now time.Duration, acts []Action) {
		for _, a := range acts {
			s, ok := a.(Send)
			if !ok || s.Info.Kind != FrameHeartbeat {
				continue
			}
			sends++
			if s.LAN1 {
				lan1++
				if !s.LAN2 {
					t.Errorf("%v: a LAN 1 heartbeat alone", now)
				}
				if gap := now - last1; gap > cfg.LAN1Interval {
					t.Errorf("%v: LAN 1 heartbeats %v apart, more than %v", now, gap, cfg.LAN1Interval)
				}
				last1 = now
			}
		}
	}
	check(0, e.Start(0))
	for now := 100 * time.Microsecond; now <= 100*time.Millisecond; now += 100 * time.Microsecond {
		check(now, e.Tick(now))
	}
	if sends != 51 || lan1 != 51 {
		t.Errorf("in 100 ms: %d sends, %d with LAN 1; want 51 and 51", sends, lan1)
	}
}

func TestStepEvents(t *testing.T) {
	e, _ := New(testConfig(ModeMain, 1), 0, 0)
	e.Start(0)
	logs := func(acts []Action) []string {
		var k []string
		for _, a := range acts {
			if l, ok := a.(Log); ok {
				k = append(k, l.Kind)
			}
		}
		return k
	}
	if got := logs(e.Step(1, LinkChanged{Path: PathLAN2, Up: false})); !slices.Contains(got, "link") || e.Status().LAN2Up {
		t.Errorf("link down: logs %v, LAN2Up %v", got, e.Status().LAN2Up)
	}
	e.Step(2, LinkChanged{Path: PathLAN1, Up: false})
	if e.Status().LAN1Up {
		t.Error("LAN 1 still up")
	}
	e.Step(3, MirrorChanged{State: MirrorSplitBrain})
	if st := e.Status(); !hasAlarm(st, AlarmSplitBrain) || st.Mirror != MirrorSplitBrain {
		t.Errorf("split brain: %+v", st)
	}
	e.Step(4, MirrorChanged{State: MirrorSyncing, Percent: 40})
	if st := e.Status(); hasAlarm(st, AlarmSplitBrain) || st.Percent != 40 {
		t.Errorf("syncing: %+v", st)
	}
	e.Step(5, HookDone{Name: "alarm", Err: errors.New("exit status 1")})
	if st := e.Status(); !hasAlarm(st, AlarmHookFailed) {
		t.Errorf("hook failure not an alarm: %v", st.Alarms)
	}
	// A second fault while in fault only adds to the list.
	e.Step(6, FaultChanged{Reason: "a", Active: true})
	e.Step(7, FaultChanged{Reason: "b", Active: true})
	e.Step(8, FaultChanged{Reason: "b", Active: true})
	if st := e.Status(); st.Role != RoleFault || len(st.Faults) != 2 {
		t.Errorf("faults: %+v", st)
	}
	e.Step(9, FaultChanged{Reason: "a", Active: false})
	if e.Role() != RoleFault {
		t.Error("left fault with one fault still active")
	}
	e.Step(10, FaultChanged{Reason: "b", Active: false})
	if e.Role() != RoleSecondary {
		t.Errorf("role after faults cleared: %s", e.Role())
	}
}

func TestPanicsOnImpossibleInput(t *testing.T) {
	e, _ := New(testConfig(ModeMain, 1), 0, 0)
	mustPanic(t, "unknown command", func() { e.Step(0, CommandIssued{Cmd: 99}) })
	mustPanic(t, "demote from starting", func() { e.demote(RoleSecondary, "x") })
}

func mustPanic(t *testing.T, name string, f func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Errorf("%s: no panic", name)
		}
	}()
	f()
}

func TestHandoverWaitsForHookAndFlush(t *testing.T) {
	s := formedPair(t)
	m := s.nodes[0]
	m.actions = nil
	s.step(0, CommandIssued{Cmd: CmdSwap})
	if !m.e.Status().Handover || !m.holds {
		t.Fatal("handover must keep the address until the hook and flush are done")
	}
	s.run(50 * time.Millisecond)
	var order []string
	for _, a := range m.actions {
		switch x := a.(type) {
		case RunHook:
			order = append(order, "hook:"+x.Name)
		case FlushMirror:
			order = append(order, "flush")
		case ReleaseAddress:
			order = append(order, "release")
		case Send:
			if x.Info.Kind == FrameRelease {
				order = append(order, "RELEASE")
			}
		}
	}
	want := []string{"hook:to-secondary", "flush", "release", "RELEASE"}
	if !slices.Equal(order, want) {
		t.Errorf("handover order %v, want %v", order, want)
	}
}

func TestFlushFailureStillHandsOver(t *testing.T) {
	e, _ := New(testConfig(ModeMain, 1), 0, 0)
	e.Start(0)
	e.handover = true
	e.role = RolePrimary
	acts := e.Step(time.Millisecond, FlushDone{Err: errors.New("peer gone")})
	if e.Role() != RoleSecondary {
		t.Fatalf("role %s", e.Role())
	}
	found := false
	for _, a := range acts {
		if l, ok := a.(Log); ok && strings.Contains(l.Message, "peer gone") {
			found = true
		}
	}
	if !found {
		t.Errorf("flush error not logged: %v", acts)
	}
}

func TestShutdown(t *testing.T) {
	s := formedPair(t)
	s.step(0, CommandIssued{Cmd: CmdShutdown})
	took, ok := s.runUntil(time.Second, func() bool { return s.role(1) == RolePrimary })
	if !ok || took > 50*time.Millisecond {
		t.Fatalf("shutdown handover: ok %v after %v", ok, took)
	}
	s.powerOff(0)
	// A primary whose peer cannot take steps down on shutdown, in order:
	// its to-secondary hook runs and is waited for while it still holds the
	// address and serves the datastore (the hook may unmount a filesystem
	// on the NBD device), then the address and the export go; no RELEASE.
	s.run(2 * time.Second)
	n := s.nodes[1]
	from := len(n.actions)
	s.step(1, CommandIssued{Cmd: CmdShutdown})
	if s.role(1) != RolePrimary || !n.holds {
		t.Fatalf("lone primary stepped down before its to-secondary hook: %s holds %v", s.role(1), n.holds)
	}
	s.run(50 * time.Millisecond)
	if s.role(1) != RoleSecondary || n.holds {
		t.Fatalf("lone primary on shutdown: %s holds %v", s.role(1), n.holds)
	}
	hook, export := -1, -1
	for j, a := range n.actions[from:] {
		switch a := a.(type) {
		case RunHook:
			if a.Name == "to-secondary" && a.Wait && hook < 0 {
				hook = j
			}
		case SetMirrorRole:
			if !a.Primary && export < 0 {
				export = j
			}
		case Send:
			if a.Info.Kind == FrameRelease {
				t.Fatal("a lone primary sent RELEASE on shutdown")
			}
		case FlushMirror:
			t.Fatal("a lone primary flushed to a peer that cannot take")
		}
	}
	if hook < 0 || export < hook {
		t.Fatalf("to-secondary hook (waited) at %d, export dropped at %d: %v", hook, export, n.actions[from:])
	}
}

// StepFrame does what Step does with the same frame.
func TestStepFrameIsStep(t *testing.T) {
	a, _ := New(testConfig(ModeSpare, 2), 0, 0)
	b, _ := New(testConfig(ModeSpare, 2), 0, 0)
	a.Start(0)
	b.Start(0)
	peer := PeerInfo{Kind: FrameHeartbeat, NodeID: 1, BootID: 1, Nonce: 5, Echo: a.cfg.Nonce, Mode: ModeMain,
		Role: RolePrimary, Preferred: true, Eligible: true, Epoch: 1, Data: DataUpToDate, Software: "1.0.0"}
	for i, now := range []time.Duration{time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond} {
		peer.Seq = uint64(i + 1)
		ev := FrameReceived{Path: PathLAN2, Peer: peer}
		got, want := a.StepFrame(now, ev), b.Step(now, ev)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("at %v: StepFrame %v, Step %v", now, got, want)
		}
	}
	if sa, sb := a.Status(), b.Status(); fmt.Sprint(sa) != fmt.Sprint(sb) {
		t.Fatalf("status after StepFrame %+v, after Step %+v", sa, sb)
	}
}

// The names appear in `status --json`, the logbook, hook environments and
// config files: every one, as other tools expect it.
func TestEnumNamesKept(t *testing.T) {
	names := func(n int, f func(int) string) []string {
		var out []string
		for i := range n {
			out = append(out, f(i))
		}
		return out
	}
	tests := []struct {
		got  []string
		want []string
	}{
		{names(4, func(i int) string { return Mode(i).String() }), []string{"invalid", "independent", "main", "spare"}},
		{names(6, func(i int) string { return Role(i).String() }), []string{"invalid", "starting", "primary", "secondary", "fault", "standalone"}},
		{names(4, func(i int) string { return PeerState(i).String() }), []string{"invalid", "unknown", "up", "down"}},
		{names(4, func(i int) string { return DataState(i).String() }), []string{"invalid", "up-to-date", "outdated", "inconsistent"}},
		{names(7, func(i int) string { return MirrorState(i).String() }), []string{"invalid", "off", "connecting", "syncing", "in-sync", "behind", "split-brain"}},
		{names(3, func(i int) string { return Recovery(i).String() }), []string{"invalid", "automatic", "manual"}},
		{names(3, func(i int) string { return LineLoss(i).String() }), []string{"invalid", "probe", "takeover"}},
		{names(3, func(i int) string { return Path(i).String() }), []string{"invalid", "lan2", "lan1"}},
		{names(3, func(i int) string { return FrameKind(i).String() }), []string{"invalid", "heartbeat", "release"}},
		{names(5, func(i int) string { return Command(i).String() }), []string{"invalid", "swap", "takeover-force", "acknowledge", "shutdown"}},
		{names(3, func(i int) string { return DropReason(i).String() }), []string{"invalid", "stale", "reflected"}},
	}
	for _, tt := range tests {
		if !slices.Equal(tt.got, tt.want) {
			t.Errorf("names %q, want %q", tt.got, tt.want)
		}
	}
	for _, s := range []string{"independent", "main", "spare"} {
		if m, err := ParseMode(s); err != nil || m.String() != s {
			t.Errorf("ParseMode(%q) = %v, %v", s, m, err)
		}
	}
	if _, err := ParseRecovery("invalid"); err == nil {
		t.Error("ParseRecovery accepted the invalid zero value's name")
	}
}
