package daemon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pairguard/pairguard/drivers/rawether/rawethertest"
	"github.com/pairguard/pairguard/firmware/arbiter"
	"github.com/pairguard/pairguard/firmware/pairing"
)

// With an arbiter configured, both units restart internally right after
// the teach-in, so that the lease client asks with the pair's new key (it
// is fixed when the client opens); after the restart the main is granted
// the lease by an arbiter that serves the key arbiter-key prints. Before,
// a main taught in while running asked with the key of no pair key until
// someone restarted it.
func TestDaemonTeachInArbiterRestarts(t *testing.T) {
	srv := startArbiter(t)
	lan2, lan1 := rawethertest.NewHub(), rawethertest.NewHub()
	mdir, sdir := t.TempDir(), t.TempDir()
	extra := fmt.Sprintf("[arbiter]\naddress = %q", srv.Addr().String())
	m := startPairNode(t, pairConfig(t, "main", mdir, extra), lan2, lan1, 1)
	s := startPairNode(t, pairConfig(t, "spare", sdir, extra), lan2, lan1, 2)
	_, w := m.pair(t, "begin", "")
	if resp, _ := s.pair(t, "join", w.Code); !resp.OK {
		t.Fatalf("join: %+v", resp)
	}
	waitFor(t, "both pending", func() bool {
		return m.report(t).Pairing.State == "pending" && s.report(t).Pairing.State == "pending"
	})
	m.pair(t, "accept", "")
	s.pair(t, "accept", "")
	for _, n := range []*node{m, s} {
		select {
		case err := <-n.done:
			if !errors.Is(err, ErrRestart) {
				t.Fatalf("Run returned %v, want ErrRestart", err)
			}
			n.cancel = nil
		case <-time.After(10 * time.Second):
			t.Fatal("a unit with an arbiter did not restart after the teach-in")
		}
	}

	b, err := os.ReadFile(filepath.Join(mdir, recordFile))
	if err != nil {
		t.Fatal(err)
	}
	var rec pairing.Record
	if err := rec.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	key, err := PairKey(pairConfig(t, "main", mdir, extra))
	if err != nil || string(key) != string(rec.PairKey[:]) {
		t.Fatalf("PairKey = %x, %v; the record holds %x", key, err, rec.PairKey)
	}
	if err := srv.SetKeys([][]byte{arbiter.DeriveKey(key)}); err != nil {
		t.Fatal(err)
	}
	m = startPairNode(t, pairConfig(t, "main", mdir, extra), lan2, lan1, 3)
	startPairNode(t, pairConfig(t, "spare", sdir, extra), lan2, lan1, 4)
	waitForLong(t, "the main granted the lease with the pair's key", 10*time.Second, func() bool {
		r := m.report(t)
		return r.Role == "primary" && r.Arbiter != nil && r.Arbiter.State == "granted"
	})
}
