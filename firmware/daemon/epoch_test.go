package daemon

import (
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/pairguard/pairguard/drivers/rawether/rawethertest"
)

// The reserved epoch in the state dir: a secondary writes its next claim's
// epoch ahead to its own record, and the epoch file follows the claim.

func TestDaemonReservedEpoch(t *testing.T) {
	lan2, lan1 := rawethertest.NewHub(), rawethertest.NewHub()
	sdir := t.TempDir()
	m := startNode(t, "main", lan2, lan1, 1)
	s := startNodeWith(t, "spare", lan2, lan1, 2, sdir, "", nil)
	waitFor(t, "main primary", func() bool { return m.report(t).Role == "primary" })
	state := stateDir(sdir)
	waitFor(t, "the spare's reserved epoch", func() bool {
		v, _, _ := state.readUint(reservedFile)
		return s.report(t).Role == "secondary" && v == 2
	})
	if e, _, _ := state.readUint("epoch"); e != 1 {
		t.Errorf("spare's epoch file %d, want 1", e)
	}
	if r := s.report(t); r.Epoch != 1 {
		t.Errorf("spare's status epoch %d, want 1: the reserved epoch is not current", r.Epoch)
	}

	lan2.Cut("main-l2")
	lan1.Cut("main-l1")
	m.stop(t)
	waitFor(t, "spare primary", func() bool { return s.report(t).Role == "primary" })
	if r := s.report(t); r.Epoch != 2 || len(r.Faults) != 0 {
		t.Errorf("spare after takeover: epoch %d, faults %v", r.Epoch, r.Faults)
	}
	waitFor(t, "the epoch file after the claim", func() bool {
		e, _, _ := state.readUint("epoch")
		return e == 2
	})
}

// A node restarted with a reserved epoch above its epoch file (a claim
// whose epoch file was not written before a crash) shows the file's epoch
// and claims above the reserved one.
func TestDaemonClaimsAboveReservedAfterRestart(t *testing.T) {
	lan2, lan1 := rawethertest.NewHub(), rawethertest.NewHub()
	dir := t.TempDir()
	for name, v := range map[string]string{"epoch": "4\n", reservedFile: "5\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s := startNodeWith(t, "spare", lan2, lan1, 2, dir, "", nil)
	if r := s.report(t); r.Epoch != 4 {
		t.Errorf("restarted node shows epoch %d, want 4 (the epoch file's)", r.Epoch)
	}
	waitFor(t, "primary alone", func() bool { return s.report(t).Role == "primary" })
	if r := s.report(t); r.Epoch != 6 {
		t.Errorf("claimed epoch %d, want 6 (5 may have been claimed before the crash)", r.Epoch)
	}
	if e, _, _ := stateDir(dir).readUint("epoch"); e != 6 {
		t.Errorf("epoch file %d after the claim, want 6", e)
	}
}

// A reserved record that cannot be written: the takeover persists its
// epoch before the claim instead, and the node is not held in fault.
func TestDaemonReservationFailureFallsBack(t *testing.T) {
	lan2, lan1 := rawethertest.NewHub(), rawethertest.NewHub()
	sdir := t.TempDir()
	var tried atomic.Int32
	m := startNode(t, "main", lan2, lan1, 1)
	s := startNodeWith(t, "spare", lan2, lan1, 2, sdir, "", func(d *Daemon) {
		d.writeReserved = func(uint64) error { tried.Add(1); return errors.New("EIO") }
	})
	waitFor(t, "main primary, spare secondary", func() bool {
		return m.report(t).Role == "primary" && s.report(t).Role == "secondary" && tried.Load() > 0
	})
	lan2.Cut("main-l2")
	lan1.Cut("main-l1")
	m.stop(t)
	waitFor(t, "spare primary", func() bool { return s.report(t).Role == "primary" })
	r := s.report(t)
	if e, _, _ := stateDir(sdir).readUint("epoch"); r.Epoch != 2 || e != 2 || len(r.Faults) != 0 {
		t.Errorf("spare after takeover: epoch %d, file %d, faults %v", r.Epoch, e, r.Faults)
	}
	if v, ok, _ := stateDir(sdir).readUint(reservedFile); ok {
		t.Errorf("a reserved record %d although every write failed", v)
	}
}
