package daemon

import (
	"errors"
	"os"
	"testing"

	"github.com/pairguard/pairguard/firmware/frame"
)

func TestStateDir(t *testing.T) {
	d := stateDir(t.TempDir())
	id, err := d.nodeID()
	if err != nil || id == 0 {
		t.Fatalf("nodeID = %x, %v", id, err)
	}
	if again, _ := d.nodeID(); again != id {
		t.Errorf("node id changed across starts: %x then %x", id, again)
	}
	for want := uint64(1); want <= 3; want++ {
		if b, err := d.nextBoot(); err != nil || b != want {
			t.Fatalf("boot %d, %v; want %d", b, err, want)
		}
	}
	// The epoch only grows: a late reservation does not lower it.
	d.raiseEpoch(7)
	d.raiseEpoch(5)
	if v, _, _ := d.readUint("epoch"); v != 7 {
		t.Errorf("epoch %d, want 7", v)
	}
	os.WriteFile(d.path("epoch"), []byte("garbage"), 0o600)
	if _, _, err := d.readUint("epoch"); err == nil {
		t.Error("a corrupt epoch file was read as a number")
	}
}

func TestReplayMarksSurviveRestart(t *testing.T) {
	d := stateDir(t.TempDir())
	r := frame.NewReplay()
	for seq := uint64(1); seq <= 10; seq++ {
		if err := r.Check(42, 3, seq); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Check(7, 9, 1); err != nil { // this node's own frame, reflected
		t.Fatal(err)
	}
	if err := d.saveReplay(r, 7); err != nil {
		t.Fatal(err)
	}
	// After a restart of this node, a frame recorded from the peer's boot 3
	// (or an older boot) is still refused; its next boot is accepted.
	r2 := frame.NewReplay()
	if err := d.loadReplay(r2); err != nil {
		t.Fatal(err)
	}
	if err := r2.Check(42, 3, 5); !errors.Is(err, frame.ErrReplay) {
		t.Errorf("replayed frame of the same boot: %v", err)
	}
	if err := r2.Check(42, 2, 100); !errors.Is(err, frame.ErrReplay) {
		t.Errorf("frame of an older boot: %v", err)
	}
	if err := r2.Check(42, 4, 1); err != nil {
		t.Errorf("the peer's next boot refused: %v", err)
	}
	if marks := r2.Snapshot(); len(marks) != 1 || marks[0].NodeID != 42 {
		t.Errorf("marks %+v, want the peer's only", marks)
	}
}
