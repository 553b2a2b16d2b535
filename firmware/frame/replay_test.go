package frame

import (
	"errors"
	"math/rand/v2"
	"testing"
)

func TestReplay(t *testing.T) {
	type step struct {
		node, boot, seq uint64
		replay          bool
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"first frame of any seq", []step{{1, 5, 900, false}}},
		{"repeat", []step{{1, 1, 10, false}, {1, 1, 10, true}}},
		{"in order", []step{{1, 1, 1, false}, {1, 1, 2, false}, {1, 1, 3, false}}},
		{"out of order inside window once", []step{
			{1, 1, 10, false}, {1, 1, 12, false}, {1, 1, 11, false}, {1, 1, 11, true}, {1, 1, 12, true}, {1, 1, 10, true},
		}},
		{"window edge", []step{{1, 1, 100, false}, {1, 1, 100 - 63, false}, {1, 1, 100 - 64, true}}},
		{"big jump clears window", []step{{1, 1, 1, false}, {1, 1, 1000, false}, {1, 1, 999, false}, {1, 1, 1, true}}},
		{"jump of exactly window", []step{{1, 1, 1, false}, {1, 1, 65, false}, {1, 1, 2, false}, {1, 1, 1, true}}},
		{"new boot resets", []step{{1, 1, 500, false}, {1, 2, 0, false}, {1, 2, 1, false}, {1, 2, 0, true}}},
		{"older boot refused", []step{{1, 2, 1, false}, {1, 1, 9999, true}}},
		{"peers are separate", []step{{1, 1, 5, false}, {2, 1, 5, false}, {2, 1, 5, true}, {1, 3, 0, false}, {2, 1, 6, false}}},
		{"seq zero", []step{{1, 1, 0, false}, {1, 1, 0, true}, {1, 1, 1, false}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r Replay
			for i, s := range tt.steps {
				err := r.Check(s.node, s.boot, s.seq)
				if got := errors.Is(err, ErrReplay); got != s.replay || (err != nil && !got) {
					t.Fatalf("step %d %+v: err = %v", i, s, err)
				}
			}
		})
	}
}

func TestReplaySnapshotRestore(t *testing.T) {
	var r Replay
	for seq := uint64(1); seq <= 10; seq++ {
		if err := r.Check(7, 3, seq); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Check(2, 1, 4); err != nil {
		t.Fatal(err)
	}
	marks := r.Snapshot()
	want := []Mark{{NodeID: 2, BootID: 1, Seq: 4}, {NodeID: 7, BootID: 3, Seq: 10}}
	if len(marks) != len(want) || marks[0] != want[0] || marks[1] != want[1] {
		t.Fatalf("Snapshot = %+v, want %+v", marks, want)
	}

	// The daemon restarts.
	restored := NewReplay()
	restored.Restore(marks)
	for _, c := range []struct {
		boot, seq uint64
		replay    bool
	}{
		{2, 100, true}, // older boot, even with a high seq
		{3, 10, true},  // seen before the restart
		{3, 1, true},
		{3, 11, false},
		{4, 0, false},
	} {
		if err := restored.Check(7, c.boot, c.seq); errors.Is(err, ErrReplay) != c.replay {
			t.Errorf("Check(7, %d, %d) = %v, want replay %v", c.boot, c.seq, err, c.replay)
		}
	}
}

// replayModel is the naive model of Replay: a set of everything seen.
type replayModel struct {
	boot, top uint64
	started   bool
	seen      map[uint64]bool
}

func (m *replayModel) check(boot, seq uint64) bool {
	if !m.started || boot > m.boot {
		*m = replayModel{boot: boot, top: seq, started: true, seen: map[uint64]bool{seq: true}}
		return true
	}
	if boot < m.boot || m.seen[seq] || (seq < m.top && m.top-seq >= WindowSize) {
		return false
	}
	m.seen[seq] = true
	m.top = max(m.top, seq)
	return true
}

func TestReplayAgainstModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for run := range 200 {
		var r Replay
		var m replayModel
		boot, seq := uint64(1), uint64(0)
		for i := range 2000 {
			switch x := rng.IntN(100); {
			case x < 2:
				boot++
				seq = 0
			case x < 4:
				boot = max(1, boot-1)
			case x < 6:
				seq += uint64(rng.IntN(200))
			}
			s := seq + uint64(rng.IntN(80))
			s = max(s, 40) - 40 // around the top, both sides of the window
			seq++
			want := m.check(boot, s)
			if got := r.Check(1, boot, s) == nil; got != want {
				t.Fatalf("run %d step %d: Check(boot %d, seq %d) accepted %v, model %v", run, i, boot, s, got, want)
			}
		}
	}
}
