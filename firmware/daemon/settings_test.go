package daemon

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pairguard/pairguard/drivers/rawether/rawethertest"
	"github.com/pairguard/pairguard/firmware/config"
)

// settingsConfig is a node's config with the heartbeat interval given;
// pairKey "" leaves the node to the teach-in.
func settingsConfig(t *testing.T, mode, dir, interval, pairKey string) *config.Config {
	t.Helper()
	top := fmt.Sprintf("mode = %q\nstate-dir = %q\nnode-name = \"%s-unit\"\n", mode, dir, mode)
	if pairKey != "" {
		top += fmt.Sprintf("pair-key = %q\n", pairKey)
	}
	src := top + "[lan1]\ninterface = \"l1\"\nservice-address = \"192.168.5.10/24\"\n[lan2]\ninterface = \"l2\"\n"
	src += fmt.Sprintf("[heartbeat]\ninterval = %q\nconnection-wait-time = \"300ms\"\n", interval)
	src += fmt.Sprintf("[hooks]\ndir = %q\n", filepath.Join(dir, "hooks"))
	c, err := config.Parse(mode+".toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mismatchKeys(r Report) []string {
	if r.Pairing == nil || r.Pairing.Mismatch == "" {
		return nil
	}
	return strings.Split(r.Pairing.Mismatch, ",")
}

// A running pair compares its settings: the main, restarted with another
// heartbeat interval, makes the spare (which runs on the interval it
// adopted at the teach-in) raise settings-mismatch naming
// heartbeat.interval, with both values in its logbook; the main put back
// as it was clears it. Before, nothing told the spare.
func TestDaemonSettingsMismatchFromPeer(t *testing.T) {
	lan2, lan1 := rawethertest.NewHub(), rawethertest.NewHub()
	mdir, sdir := t.TempDir(), t.TempDir()
	m := startPairNode(t, settingsConfig(t, "main", mdir, "20ms", ""), lan2, lan1, 1)
	s := startPairNode(t, settingsConfig(t, "spare", sdir, "20ms", ""), lan2, lan1, 2)
	// The spare's config says what the main's does: it adopts the main's
	// settings without restarting.
	teachPair(t, m, s)
	waitFor(t, "pair formed", func() bool {
		r := s.report(t)
		return r.Role == "secondary" && r.Peer.State == "up"
	})
	time.Sleep(1500 * time.Millisecond) // settings exchanged at peer-up
	for _, n := range []*node{m, s} {
		if r := n.report(t); slices.Contains(r.Alarms, "settings-mismatch") {
			t.Fatalf("%s: settings-mismatch in a pair that agrees: %q", r.Mode, r.Pairing.Mismatch)
		}
	}

	m.stop(t)
	m = startPairNode(t, settingsConfig(t, "main", mdir, "30ms", ""), lan2, lan1, 3)
	waitForLong(t, "settings-mismatch on the spare", 10*time.Second, func() bool {
		r := s.report(t)
		// The timers derived from the interval (failover-time,
		// lan1-interval) differ too and are named with it.
		return slices.Contains(r.Alarms, "settings-mismatch") && slices.Contains(mismatchKeys(r), "heartbeat.interval")
	})
	found := false
	for _, e := range s.d.book.Last(0) {
		found = found || e.Kind == "alarm" && strings.Contains(e.Message, `heartbeat.interval is "30ms" on the peer, "20ms" here`)
	}
	if !found {
		t.Error("no logbook entry with both values")
	}
	if r := m.report(t); !slices.Contains(mismatchKeys(r), "heartbeat.interval") {
		t.Errorf("the main does not name heartbeat.interval: %q", r.Pairing.Mismatch)
	}

	m.stop(t)
	m = startPairNode(t, settingsConfig(t, "main", mdir, "20ms", ""), lan2, lan1, 4)
	waitForLong(t, "settings-mismatch cleared on the spare", 10*time.Second, func() bool {
		return !slices.Contains(s.report(t).Alarms, "settings-mismatch")
	})
}

// A provisioned pair compares the same keys: both configs are the
// operator's, so both units raise the alarm.
func TestDaemonSettingsMismatchProvisioned(t *testing.T) {
	const key = "daemon-test-pair-key-0001"
	lan2, lan1 := rawethertest.NewHub(), rawethertest.NewHub()
	mdir, sdir := t.TempDir(), t.TempDir()
	m := startPairNode(t, settingsConfig(t, "main", mdir, "20ms", key), lan2, lan1, 1)
	s := startPairNode(t, settingsConfig(t, "spare", sdir, "20ms", key), lan2, lan1, 2)
	waitFor(t, "pair formed", func() bool {
		r := s.report(t)
		return r.Role == "secondary" && r.Peer.State == "up"
	})
	m.stop(t)
	m = startPairNode(t, settingsConfig(t, "main", mdir, "25ms", key), lan2, lan1, 3) // a new hub port
	for _, n := range []*node{s, m} {
		waitForLong(t, "settings-mismatch on both", 10*time.Second, func() bool {
			r := n.report(t)
			return slices.Contains(r.Alarms, "settings-mismatch") && slices.Contains(mismatchKeys(r), "heartbeat.interval") &&
				r.Pairing.Step == "provisioned"
		})
	}
}
