package daemon

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pairguard/pairguard/drivers/addr/addrtest"
	"github.com/pairguard/pairguard/drivers/rawether/rawethertest"
	"github.com/pairguard/pairguard/firmware/engine"
	"github.com/pairguard/pairguard/firmware/frame"
)

func writeHook(t *testing.T, dir, name, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "hooks"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "hooks", name), []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// A demotion while to-primary runs kills it (and its children) before
// to-secondary runs. Before, both ran at once: to-secondary finished first
// and to-primary went on starting services on a node that was no longer
// primary.
func TestHookDemotionKillsToPrimary(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	writeHook(t, dir, "to-primary", `echo "start $PAIRGUARD_ROLE $PAIRGUARD_PREV_ROLE $PAIRGUARD_STANDBY" >> `+out+`
(sleep 1; echo child >> `+out+`) &
sleep 1.5
echo end-primary >> `+out+"\n")
	writeHook(t, dir, "to-secondary", `echo "secondary $PAIRGUARD_ROLE $PAIRGUARD_PREV_ROLE" >> `+out+"\n")
	lan2, lan1 := rawethertest.NewHub(), rawethertest.NewHub()
	m := startNodeWith(t, "main", lan2, lan1, 1, dir, `standby = "warm"`, nil)
	waitFor(t, "to-primary started", func() bool { return strings.Contains(readFile(out), "start") })
	m.d.queue(engine.FaultChanged{Reason: "test-fault", Active: true})
	waitFor(t, "to-secondary ran", func() bool { return strings.Contains(readFile(out), "secondary") })
	time.Sleep(2 * time.Second) // past the end of the killed hook and its child
	want := "start primary starting warm\nsecondary fault primary\n"
	if got := readFile(out); got != want {
		t.Errorf("hooks wrote %q, want %q", got, want)
	}
	var killed bool
	for _, e := range m.d.book.Last(0) {
		killed = killed || (e.Kind == "hook" && strings.Contains(e.Message, "to-primary killed"))
	}
	if !killed {
		t.Error("the logbook does not say to-primary was killed")
	}
}

// Hook output goes to the logbook.
func TestHookOutputInLogbook(t *testing.T) {
	dir := t.TempDir()
	writeHook(t, dir, "to-primary", "echo service started\n")
	lan2, lan1 := rawethertest.NewHub(), rawethertest.NewHub()
	m := startNodeWith(t, "main", lan2, lan1, 1, dir, "", nil)
	waitFor(t, "hook output in the logbook", func() bool {
		for _, e := range m.d.book.Last(0) {
			if e.Kind == "hook" && strings.Contains(e.Message, "to-primary: exit 0: service started") {
				return true
			}
		}
		return false
	})
}

func hasAlarm(r Report, a string) bool { return slices.Contains(r.Alarms, a) }

// Each check is tracked by name: one recovering does not clear the alarm
// while another still fails. Before, one healthy flag served all checks.
func TestTwoChecks(t *testing.T) {
	dir := t.TempDir()
	check := func(name string) string {
		return `[[check]]
name = "` + name + `"
command = "test -e ` + filepath.Join(dir, name+"-ok") + `"
interval = "100ms"
fall = 1
rise = 1
`
	}
	lan2, lan1 := rawethertest.NewHub(), rawethertest.NewHub()
	n := startNodeWith(t, "spare", lan2, lan1, 2, dir, check("a")+check("b"), nil)
	waitFor(t, "check-failed raised", func() bool {
		r := n.report(t)
		return hasAlarm(r, "check-failed") && len(r.Checks) == 2 && !r.Checks[0].Healthy && !r.Checks[1].Healthy
	})
	os.WriteFile(filepath.Join(dir, "a-ok"), nil, 0o600)
	waitFor(t, "check a healthy", func() bool { return n.report(t).Checks[0].Healthy })
	time.Sleep(300 * time.Millisecond)
	if r := n.report(t); !hasAlarm(r, "check-failed") || r.Checks[1].Healthy {
		t.Fatalf("check b still fails, yet: alarms %v checks %+v", r.Alarms, r.Checks)
	}
	os.WriteFile(filepath.Join(dir, "b-ok"), nil, 0o600)
	waitFor(t, "check-failed cleared", func() bool { return !hasAlarm(n.report(t), "check-failed") })
}

// recMirror records what the daemon asks of the mirror.
type recMirror struct {
	noMirror
	mu      sync.Mutex
	primary []bool
}

func (m *recMirror) SetPrimary(p, _ bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.primary = append(m.primary, p)
}

func (m *recMirror) calls() []bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.primary)
}

// An epoch that cannot be fsynced abandons the whole takeover: no address,
// no frame announcing the node primary, no mirror source, no to-primary
// hook. Before, only the address claim was skipped. The fault clears once
// the state dir takes the epoch again.
func TestEpochFsyncFailureAbandonsTakeover(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	writeHook(t, dir, "to-primary", "echo to-primary >> "+out+"\n")
	lan2, lan1 := rawethertest.NewHub(), rawethertest.NewHub()
	spy := lan2.Port("spy", mac(9))
	var primaryFrames atomic.Int32
	spyCtx, stopSpy := context.WithCancel(context.Background())
	var spyDone sync.WaitGroup
	spyDone.Go(func() {
		buf := make([]byte, 1600)
		key := frame.NewKey([]byte("daemon-test-pair-key-0001"))
		for spyCtx.Err() == nil {
			spy.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			n, _, err := spy.Recv(buf)
			if err != nil {
				continue
			}
			var f frame.Frame
			if frame.Decode(buf[:n], key, &f) == nil && engine.Role(f.Role) == engine.RolePrimary {
				primaryFrames.Add(1)
			}
		}
	})
	t.Cleanup(func() { stopSpy(); spyDone.Wait() })

	var failing atomic.Bool
	failing.Store(true)
	mirror := &recMirror{}
	m := startNodeWith(t, "main", lan2, lan1, 1, dir, "", func(d *Daemon) {
		d.mirror = mirror
		d.faults.stateDir = 100 * time.Millisecond
		real := d.writeEpoch
		d.writeEpoch = func(e uint64) error {
			if failing.Load() {
				return errors.New("EIO")
			}
			return real(e)
		}
	})
	waitFor(t, "fault state-dir-unwritable", func() bool {
		r := m.report(t)
		return r.Role == "fault" && slices.Contains(r.Faults, faultStateDir)
	})
	time.Sleep(300 * time.Millisecond)
	for _, c := range m.addrs.Calls() {
		if c.Op == addrtest.OpAdd {
			t.Errorf("address added without a persisted epoch: %v", m.addrs.Calls())
		}
	}
	if n := primaryFrames.Load(); n != 0 {
		t.Errorf("%d frames announced the node primary with an epoch not on disk", n)
	}
	if slices.Contains(mirror.calls(), true) {
		t.Errorf("mirror made primary: %v", mirror.calls())
	}
	if got := readFile(out); got != "" {
		t.Errorf("to-primary ran: %q", got)
	}

	// The state dir recovers: the fault clears and the node takes over.
	failing.Store(false)
	waitFor(t, "primary after the fault cleared", func() bool { return m.report(t).Role == "primary" })
	r := m.report(t)
	if onDisk, _, _ := stateDir(dir).readUint("epoch"); onDisk < r.Epoch {
		t.Errorf("primary with epoch %d, %d on disk", r.Epoch, onDisk)
	}
	waitFor(t, "the takeover announced", func() bool { return primaryFrames.Load() > 0 && len(m.addrs.Addresses()) == 1 })
}

// address-claim-failed clears after its back-off and the node claims
// again. Before, it held the node in fault until a restart.
func TestAddressClaimFaultClears(t *testing.T) {
	lan2, lan1 := rawethertest.NewHub(), rawethertest.NewHub()
	dir := t.TempDir()
	var m *node
	m = startNodeWith(t, "main", lan2, lan1, 1, dir, "", func(d *Daemon) {
		d.faults.claimMin = 100 * time.Millisecond
		d.faults.claim = d.faults.claimMin
	})
	m.addrs.SetErr(addrtest.OpAdd, errors.New("netlink: no buffer space"))
	waitFor(t, "fault address-claim-failed", func() bool {
		return slices.Contains(m.report(t).Faults, faultAddressClaim)
	})
	m.addrs.SetErr(addrtest.OpAdd, nil)
	waitFor(t, "primary with the address", func() bool {
		r := m.report(t)
		return r.Role == "primary" && len(r.Faults) == 0 && len(m.addrs.Addresses()) == 1
	})
}

// pairguardGoroutines lists the stacks of goroutines running this
// module's code, other than the tests themselves.
func pairguardGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "pairguard/pairguard/") && !strings.Contains(g, "testing.tRunner") {
			out = append(out, g)
		}
	}
	return out
}

// A stop leaves no goroutine behind: receivers, link watchers, checks,
// hooks (one still running at the stop), probes and the loop all end.
func TestStopLeavesNoGoroutine(t *testing.T) {
	waitNoGoroutines(t, "before the test")
	dir := t.TempDir()
	writeHook(t, dir, "to-primary", "sleep 30 &\necho started\n")
	writeHook(t, dir, "alarm", "sleep 0.3\n")
	lan2, lan1 := rawethertest.NewHub(), rawethertest.NewHub()
	checks := "[[check]]\ncommand = \"false\"\ninterval = \"100ms\"\nfall = 1\n"
	m := startNodeWith(t, "main", lan2, lan1, 1, dir, checks, nil)
	s := startNodeWith(t, "spare", lan2, lan1, 2, t.TempDir(), checks, nil)
	waitFor(t, "pair formed", func() bool { return s.report(t).Role == "secondary" && m.report(t).Role == "primary" })
	for range 200 { // a burst of events through the inbox
		m.d.queue(engine.LinkChanged{Path: engine.PathLAN1, Up: true})
	}
	m.stop(t)
	s.stop(t)
	waitNoGoroutines(t, "after the stop")
}

// waitNoGoroutines waits up to 2 s for this module's goroutines to end:
// one may still be returning from its last call.
func waitNoGoroutines(t *testing.T, when string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		g := pairguardGoroutines()
		if len(g) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines left %s:\n%s", len(g), when, strings.Join(g, "\n\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
