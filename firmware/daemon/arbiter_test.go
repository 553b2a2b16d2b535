package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/pairguard/pairguard/drivers/addr/addrtest"
	"github.com/pairguard/pairguard/drivers/arp/arptest"
	"github.com/pairguard/pairguard/drivers/rawether/rawethertest"
	"github.com/pairguard/pairguard/firmware/arbiter"
	"github.com/pairguard/pairguard/firmware/config"
	"github.com/pairguard/pairguard/firmware/engine"
)

// leaseScale stretches the lease tests' timers under qemu-user
// (PAIRGUARD_TEST_EMULATED=1): there a loaded CI machine stalled the whole
// test process for about 2 s, longer than a 1 s lease, and the main lost its
// lease while the test watched a partition (CI run of 2026-12-05).
func leaseScale() time.Duration {
	if os.Getenv("PAIRGUARD_TEST_EMULATED") == "1" {
		return 3
	}
	return 1
}

// startArbiter serves the test pair's key on loopback with short leases.
func startArbiter(t *testing.T) *arbiter.Server {
	t.Helper()
	srv, err := arbiter.Listen("127.0.0.1:0", arbiter.ServerConfig{
		Config:   arbiter.Config{MaxLease: leaseScale() * time.Second, Margin: arbiter.DefaultMargin, Window: arbiter.DefaultWindow},
		StateDir: t.TempDir(),
		Keys:     [][]byte{arbiter.DeriveKey([]byte("daemon-test-pair-key-0001"))},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return srv
}

// startLeaseNode starts a node that uses srv, with heartbeats of 100 ms
// (failover-time 500 ms, lease 1 s; three times that under emulation):
// slower than the other daemon tests' 20 ms, so that a loaded machine does
// not make the pair flap.
func startLeaseNode(t *testing.T, srv *arbiter.Server, mode string, lan2, lan1 *rawethertest.Hub, id byte) *node {
	t.Helper()
	dir := t.TempDir()
	src := fmt.Sprintf(`mode = %q
state-dir = %q
pair-key = "daemon-test-pair-key-0001"
[lan1]
interface = "l1"
service-address = "192.168.5.10/24"
[lan2]
interface = "l2"
[heartbeat]
interval = %q
connection-wait-time = %q
[hooks]
dir = %q
[arbiter]
address = %q
`, mode, dir, (leaseScale() * 100 * time.Millisecond).String(), (leaseScale() * time.Second).String(),
		filepath.Join(dir, "hooks"), srv.Addr().String())
	cfg, err := config.Parse(mode+".toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	n := &node{addrs: addrtest.New(), arp: arptest.New(mac(id)), done: make(chan error, 1)}
	d, err := New(cfg, Deps{LAN2: lan2.Port(mode+"-l2", mac(id)), LAN1: lan1.Port(mode+"-l1", mac(id)), Addr: n.addrs, ARP: n.arp},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	n.d = d
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	go func() { n.done <- d.Run(ctx) }()
	t.Cleanup(func() { n.stop(t) })
	return n
}

// arbiterPair starts a main and a spare that use srv, and waits until the
// main holds the lease.
func arbiterPair(t *testing.T, srv *arbiter.Server) (m, s *node, lan2, lan1 *rawethertest.Hub) {
	t.Helper()
	lan2, lan1 = rawethertest.NewHub(), rawethertest.NewHub()
	m = startLeaseNode(t, srv, "main", lan2, lan1, 1)
	s = startLeaseNode(t, srv, "spare", lan2, lan1, 2)
	waitForLong(t, "pair formed", leaseScale()*5*time.Second, func() bool { return m.report(t).Role == "primary" && s.report(t).Role == "secondary" })
	waitForLong(t, "main holds the lease", leaseScale()*5*time.Second, func() bool {
		r := m.report(t)
		if r.Arbiter == nil {
			t.Fatal("no arbiter in the main's status")
		}
		return r.Arbiter.State == "granted" && r.Arbiter.Holder == r.NodeID && r.Arbiter.LeaseMS > 0
	})
	if r := s.report(t); r.Arbiter == nil || r.Arbiter.State != "idle" {
		t.Fatalf("spare's arbiter %+v, want idle while it hears the main", r.Arbiter)
	}
	return m, s, lan2, lan1
}

// The nodes cannot hear each other but both reach the arbiter: the main
// keeps renewing, the spare is denied and never primary, and it raises an
// alarm since the main's lease is renewed (the main is alive).
func TestDaemonArbiterPartition(t *testing.T) {
	srv := startArbiter(t)
	m, s, lan2, lan1 := arbiterPair(t, srv)
	lan2.Cut("main-l2")
	lan1.Cut("main-l1")
	end := time.Now().Add(leaseScale() * 2500 * time.Millisecond)
	for time.Now().Before(end) {
		if r := s.report(t); r.Role == "primary" {
			t.Fatalf("spare primary while the main holds the lease: %+v", r.Arbiter)
		}
		time.Sleep(10 * time.Millisecond)
	}
	mr, sr := m.report(t), s.report(t)
	if mr.Role != "primary" || mr.Arbiter.State != "granted" {
		t.Errorf("main %s, arbiter %+v", mr.Role, mr.Arbiter)
	}
	if sr.Arbiter.State != "denied" || sr.Arbiter.Holder != mr.NodeID {
		t.Errorf("spare's arbiter %+v, want denied with the main as holder", sr.Arbiter)
	}
	if !slices.Contains(sr.Alarms, string(engine.AlarmFailoverLineDown)) {
		t.Errorf("spare alarms %v, want %s", sr.Alarms, engine.AlarmFailoverLineDown)
	}
	st := srv.Status()
	if len(st.Pairs) != 1 || st.Pairs[0].Holder != mr.NodeID || st.Pairs[0].LeaseMS <= 0 {
		t.Errorf("arbiter status %+v", st)
	}
}

// The arbiter goes away while the pair is healthy: only an alarm on the
// main, which wants its lease; nobody changes role.
func TestDaemonArbiterDown(t *testing.T) {
	srv := startArbiter(t)
	m, s, _, _ := arbiterPair(t, srv)
	epoch := m.report(t).Epoch
	srv.Close()
	waitForLong(t, "arbiter-unreachable on the main", leaseScale()*5*time.Second, func() bool {
		return slices.Contains(m.report(t).Alarms, string(engine.AlarmArbiterLost))
	})
	mr, sr := m.report(t), s.report(t)
	if mr.Role != "primary" || sr.Role != "secondary" || mr.Epoch != epoch || sr.Epoch != epoch {
		t.Errorf("roles changed: main %s epoch %d, spare %s epoch %d", mr.Role, mr.Epoch, sr.Role, sr.Epoch)
	}
	if mr.Arbiter.State != "unreachable" {
		t.Errorf("main's arbiter %+v", mr.Arbiter)
	}
	if slices.Contains(sr.Alarms, string(engine.AlarmArbiterLost)) {
		t.Errorf("the spare, which wants no lease, raised %v", sr.Alarms)
	}
}

func TestLeaseChangedMapping(t *testing.T) {
	got := leaseChanged(arbiter.Event{Kind: arbiter.EventDenied, Until: 5 * time.Second, Holder: 7, Epoch: 3,
		Reason: arbiter.ReasonHeld, RetryAfter: 300 * time.Millisecond})
	want := engine.LeaseChanged{State: engine.LeaseDenied, Until: 5 * time.Second, Holder: 7, Epoch: 3, Reason: "held",
		HolderFor: 300 * time.Millisecond}
	if got != want {
		t.Errorf("denied: %+v, want %+v", got, want)
	}
	if got := leaseChanged(arbiter.Event{Kind: arbiter.EventGranted, Until: time.Second, Holder: 1}); got.State != engine.LeaseGranted || got.Until != time.Second || got.Reason != "" {
		t.Errorf("granted: %+v", got)
	}
	if got := leaseChanged(arbiter.Event{Kind: arbiter.EventUnreachable}); got.State != engine.LeaseUnreachable {
		t.Errorf("unreachable: %+v", got)
	}
}
