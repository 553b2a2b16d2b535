package daemon

import (
	"testing"
	"time"

	"github.com/pairguard/pairguard/drivers/rawether"
	"github.com/pairguard/pairguard/drivers/rawether/rawethertest"
	"github.com/pairguard/pairguard/firmware/config"
)

// A pair at a short interval runs in drain mode (no receive goroutines):
// it forms, and the spare takes over when the main dies.
func TestDaemonDrainMode(t *testing.T) {
	lan2, lan1 := rawethertest.NewHub(), rawethertest.NewHub()
	// A failover-time far above the interval: the test runs on a busy
	// machine and asserts no timing.
	hb := "[heartbeat]\ninterval = \"2ms\"\nfailover-time = \"200ms\"\nconnection-wait-time = \"300ms\""
	short := func(mode string) *config.Config { return testConfig(t, mode, t.TempDir(), hb) }
	m := startNodeConfig(t, short("main"), lan2, lan1, 1, nil)
	s := startNodeConfig(t, short("spare"), lan2, lan1, 2, nil)
	if m.d.cfg.Engine.Interval != 2*time.Millisecond {
		t.Fatalf("interval %v", m.d.cfg.Engine.Interval)
	}
	waitFor(t, "main primary, spare secondary following it", func() bool {
		r := s.report(t)
		return m.report(t).Role == "primary" && r.Role == "secondary" && r.Peer.State == "up" && r.Epoch == 1
	})
	if m.d.drain == nil || s.d.drain == nil {
		t.Fatal("not in drain mode at 2 ms")
	}
	lan2.Cut("main-l2")
	lan1.Cut("main-l1")
	m.stop(t)
	waitFor(t, "spare primary", func() bool { return s.report(t).Role == "primary" })
	if r := s.report(t); r.Epoch != 2 || len(s.addrs.Addresses()) != 1 {
		t.Errorf("spare after takeover: epoch %d, addresses %v", r.Epoch, s.addrs.Addresses())
	}
}

// In drain mode the frames already queued go to the engine before any
// other event (here: a status command): an ARP probe's result or a command
// never finds the peer silent while its frames wait in the socket. Before,
// they waited for the next wake-up (up to an interval).
func TestDrainBeforeEvents(t *testing.T) {
	lan2, lan1 := rawethertest.NewHub(), rawethertest.NewHub()
	c := testConfig(t, "spare", t.TempDir(),
		"[heartbeat]\ninterval = \"5ms\"\nfailover-time = \"200ms\"\nconnection-wait-time = \"10s\"")
	s := startNodeConfig(t, c, lan2, lan1, 2, nil)
	waitFor(t, "running", func() bool { return s.report(t).Role == "starting" })
	if s.d.drain == nil {
		t.Fatal("not in drain mode at 5 ms")
	}
	evil := lan2.Port("evil", mac(9))
	for i := range 50 {
		before := s.report(t).Frames.Short
		evil.Send(rawether.Broadcast, []byte("PG\x01"))
		if got := s.report(t).Frames.Short; got != before+1 {
			t.Fatalf("frame %d: %d short frames counted after the status command, want %d", i, got, before+1)
		}
	}
}

func TestArrival(t *testing.T) {
	wall := time.Date(2026, 12, 5, 6, 0, 0, 0, time.UTC)
	ms := time.Millisecond
	for _, tt := range []struct {
		name        string
		at          time.Time
		mono, floor time.Duration
		want        time.Duration
	}{
		{"arrived 1.5 ms ago", wall.Add(-1500 * time.Microsecond), 100 * ms, 90 * ms, 100*ms - 1500*time.Microsecond},
		{"before the engine's time", wall.Add(-20 * ms), 100 * ms, 90 * ms, 90 * ms},
		{"in the future (wall clock stepped back)", wall.Add(5 * ms), 100 * ms, 90 * ms, 100 * ms},
		{"now", wall, 100 * ms, 90 * ms, 100 * ms},
	} {
		if got := arrival(tt.at, wall, tt.mono, tt.floor); got != tt.want {
			t.Errorf("%s: arrival = %v, want %v", tt.name, got, tt.want)
		}
	}
}
