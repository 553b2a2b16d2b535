// Package pair runs two real pairguard daemons in network namespaces.
// The tests need root; without it they are skipped with the reason.
package pair

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pairguard/pairguard/test/netns"
)

var bin string

func TestMain(m *testing.M) {
	if why := netns.Available(); why != "" {
		fmt.Printf("pair tests skipped: %s\n", why)
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "pg-pair-bin")
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	bin, err = netns.Build(dir)
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func setup(t *testing.T, o netns.Options) *netns.Pair {
	t.Helper()
	if bin == "" {
		t.Skip(netns.Available())
	}
	p, err := netns.Setup(t.TempDir(), bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range []*netns.Node{p.Main, p.Spare} {
				log, _ := os.ReadFile(n.LogFile)
				t.Logf("%s log:\n%s", n.Name, tail(string(log), 40))
			}
		}
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	for _, n := range []*netns.Node{p.Main, p.Spare} {
		if err := p.WriteConfig(n, o); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func startPair(t *testing.T, p *netns.Pair) {
	t.Helper()
	for _, n := range []*netns.Node{p.Main, p.Spare} {
		if err := p.Start(n); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.WaitRole(p.Main, "primary", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := p.WaitRole(p.Spare, "secondary", 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestPairForms(t *testing.T) {
	p := setup(t, netns.Options{})
	startPair(t, p)
	time.Sleep(300 * time.Millisecond)
	m, err := p.Status(p.Main)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := p.Status(p.Spare)
	if m.Peer.State != "up" || s.Peer.State != "up" || m.Epoch != 1 || s.Epoch != 1 {
		t.Fatalf("main %+v\nspare %+v", m, s)
	}
	if !m.Address.Held || !p.HasAddress(p.Main) || p.HasAddress(p.Spare) {
		t.Fatalf("address: main held %v has %v, spare has %v", m.Address.Held, p.HasAddress(p.Main), p.HasAddress(p.Spare))
	}
	if s.Frames.Accepted == 0 || s.Frames.Forged != 0 || s.Frames.Replayed != 0 {
		t.Errorf("spare frames %+v", s.Frames)
	}
	if s.Peer.Missed > 1 {
		t.Errorf("spare missed %d heartbeats on an idle pair", s.Peer.Missed)
	}
	// The client reaches the service address at the main.
	if out, err := netns.Exec(p.Client, "ping", "-c", "1", "-W", "1", netns.ServiceAddr); err != nil {
		t.Errorf("client ping: %v\n%s", err, out)
	}
	// `log` shows the pair forming.
	out, err := p.Run(p.Main, "log", "-n", "50")
	if err != nil || !strings.Contains(out, "redundancy-active") {
		t.Errorf("main log lacks redundancy-active: %v\n%s", err, out)
	}
}

// measurePowerLoss powers off the main of a formed pair and returns the
// time until the spare reports primary.
func measurePowerLoss(t *testing.T, p *netns.Pair) time.Duration {
	t.Helper()
	start := time.Now()
	if err := p.PowerOff(p.Main); err != nil {
		t.Fatal(err)
	}
	if _, err := p.WaitRole(p.Spare, "primary", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	// The spare's own time of the takeover: polling its status on a loaded
	// machine adds its own delay, which is not the takeover's.
	if st, err := p.Status(p.Spare); err == nil && st.LastTakeover != nil && st.LastTakeover.At.After(start) {
		return st.LastTakeover.At.Sub(start)
	}
	return time.Since(start)
}

func TestPowerLossOfMain(t *testing.T) {
	for _, tc := range []struct {
		name     string
		interval time.Duration
		missed   int
	}{
		{"defaults", 0, 0},
		{"20ms", 20 * time.Millisecond, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := setup(t, netns.Options{Interval: tc.interval, Missed: tc.missed})
			startPair(t, p)
			time.Sleep(500 * time.Millisecond)
			took := measurePowerLoss(t, p)
			interval := tc.interval
			if interval == 0 {
				interval = 100 * time.Millisecond
			}
			missed := max(tc.missed, 5)
			failover := interval * time.Duration(missed)
			t.Logf("takeover after %v (failover-time %v)", took, failover)
			if took > failover+100*time.Millisecond {
				t.Errorf("takeover took %v, want at most failover-time %v + 100ms", took, failover)
			}
			if took < failover-interval {
				t.Errorf("takeover after %v, before failover-time %v", took, failover)
			}
			st, _ := p.Status(p.Spare)
			if st.Epoch != 2 || !st.Failover || st.Peer.State != "down" || !p.HasAddress(p.Spare) {
				t.Errorf("spare after takeover: %+v has address %v", st, p.HasAddress(p.Spare))
			}
			if out, err := netns.Exec(p.Client, "ping", "-c", "1", "-W", "1", netns.ServiceAddr); err != nil {
				t.Errorf("client cannot reach the service address at the spare: %v\n%s", err, out)
			}
		})
	}
}

func TestSIGTERMHandsOver(t *testing.T) {
	p := setup(t, netns.Options{})
	startPair(t, p)
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	if err := p.Stop(p.Main); err != nil {
		t.Fatalf("stop: %v", err)
	}
	took, err := p.WaitRole(p.Spare, "primary", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	total := time.Since(start)
	t.Logf("handover: main stopped and spare primary %v after SIGTERM (%v after the main exited, as polled)", total, took)
	if p.HasAddress(p.Main) || !p.HasAddress(p.Spare) {
		t.Errorf("address after handover: main %v spare %v", p.HasAddress(p.Main), p.HasAddress(p.Spare))
	}
	// The spare claims on RELEASE, without waiting for failover-time: its
	// own reason says so (a polled time says more about the machine's load).
	st, _ := p.Status(p.Spare)
	if st.LastTakeover == nil || st.LastTakeover.Reason != "planned handover from the peer" {
		t.Errorf("spare's takeover %+v, want a RELEASE-driven handover", st.LastTakeover)
	}
	if st.Failover {
		t.Error("a planned handover lit the failover LED")
	}
}

func TestRestartKeepsEpoch(t *testing.T) {
	p := setup(t, netns.Options{})
	startPair(t, p)
	measurePowerLoss(t, p) // spare primary, epoch 2
	if err := p.Stop(p.Spare); err != nil {
		t.Fatal(err)
	}
	if err := p.Start(p.Spare); err != nil {
		t.Fatal(err)
	}
	st, err := p.Status(p.Spare)
	if err != nil || st.Epoch != 2 {
		t.Fatalf("restarted spare epoch %d, %v; want 2", st.Epoch, err)
	}
	if _, err := p.WaitRole(p.Spare, "primary", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if st, _ = p.Status(p.Spare); st.Epoch != 3 {
		t.Errorf("epoch after the restarted spare took over again: %d, want 3", st.Epoch)
	}
	// The main returns: it follows the primary spare and adopts its epoch.
	p.PowerOn(p.Main)
	if err := p.Start(p.Main); err != nil {
		t.Fatal(err)
	}
	if _, err := p.WaitRole(p.Main, "secondary", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if st, _ := p.Status(p.Main); st.Epoch != 3 {
		t.Errorf("returned main epoch %d, want 3", st.Epoch)
	}
	if data, err := os.ReadFile(filepath.Join(p.Main.Dir, "state", "epoch")); err != nil || strings.TrimSpace(string(data)) != "3" {
		t.Errorf("main's persisted epoch %q, %v", data, err)
	}
}

func TestHooksRun(t *testing.T) {
	p := setup(t, netns.Options{})
	for _, n := range []*netns.Node{p.Main, p.Spare} {
		script := "#!/bin/sh\necho \"$1 $PAIRGUARD_EVENT $PAIRGUARD_ROLE $PAIRGUARD_REASON\" >> " + filepath.Join(n.Dir, "hooks.out") + "\n"
		os.WriteFile(filepath.Join(n.Dir, "hooks.d", "10-record"), []byte(script), 0o755)
	}
	startPair(t, p)
	measurePowerLoss(t, p)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(filepath.Join(p.Spare.Dir, "hooks.out"))
		if strings.Contains(string(b), "to-primary to-primary primary peer silent") {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	b, _ := os.ReadFile(filepath.Join(p.Spare.Dir, "hooks.out"))
	t.Fatalf("spare hooks: %q", b)
}

func TestStatusCounts(t *testing.T) {
	p := setup(t, netns.Options{})
	startPair(t, p)
	out, err := p.Run(p.Main, "status")
	if err != nil || !strings.Contains(out, "role      primary") {
		t.Fatalf("status text: %v\n%s", err, out)
	}
	if _, err := p.Run(p.Spare, "swap"); err == nil || !strings.Contains(err.Error(), "secondary") {
		t.Errorf("swap on the secondary: %v", err)
	}
	if _, err := p.Run(p.Spare, "takeover"); err == nil {
		t.Error("takeover without --force accepted")
	}
	if _, err := p.Run(p.Main, "swap"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.WaitRole(p.Spare, "primary", 2*time.Second); err != nil {
		t.Fatal(err)
	}
	st, _ := p.Status(p.Main)
	if st.Role != "secondary" || slices.Contains(st.Alarms, "failover-line-down") {
		t.Errorf("main after swap: %+v", st)
	}
}
