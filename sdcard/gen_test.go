package sdcard

import (
	"testing"
)

func TestDecide(t *testing.T) {
	const (
		u = DataUpToDate
		o = DataOutdated
		i = DataInconsistent
	)
	g := func(cur uint64, d DataState, hist ...uint64) GenInfo {
		return GenInfo{Current: cur, History: hist, Data: d}
	}
	tests := []struct {
		name          string
		local, remote GenInfo
		want          Direction
	}{
		{"both fresh", g(0, i), g(0, i), DirNone},
		{"local fresh", g(0, i), g(5, u), DirFromRemote},
		{"remote fresh", g(5, u), g(0, i), DirFromLocal},
		{"equal", g(5, u), g(5, u), DirNone},
		{"equal, local outdated", g(5, o), g(5, u), DirNone},
		{"equal, local inconsistent", g(5, i), g(5, u), DirFromRemote},
		{"equal, remote inconsistent", g(5, u), g(5, i), DirFromLocal},
		{"equal, both inconsistent", g(5, i), g(5, i), DirNone},
		{"remote took over", g(5, u), g(6, u, 5), DirFromRemote},
		{"local took over", g(6, u, 5, 4), g(5, o, 4), DirFromLocal},
		{"remote took over twice", g(4, u, 3), g(6, u, 5, 4, 3), DirFromRemote},
		{"diverged", g(6, u, 5), g(7, u, 5), DirSplitBrain},
		{"unrelated", g(6, u), g(7, u), DirSplitBrain},
		{"discarded local (resolve)", g(0, o, 6, 5), g(7, u, 5), DirFromRemote},
	}
	for _, tt := range tests {
		if got := Decide(tt.local, tt.remote); got != tt.want {
			t.Errorf("%s: Decide = %v, want %v", tt.name, got, tt.want)
		}
		// Symmetry: what one side sends, the other receives.
		back := Decide(tt.remote, tt.local)
		mirror := map[Direction]Direction{DirNone: DirNone, DirFromLocal: DirFromRemote,
			DirFromRemote: DirFromLocal, DirSplitBrain: DirSplitBrain}
		if back != mirror[tt.want] {
			t.Errorf("%s reversed: Decide = %v, want %v", tt.name, back, mirror[tt.want])
		}
	}
}

func TestEnumsInvalidZero(t *testing.T) {
	for _, s := range []string{Direction(0).String(), HashKind(0).String(), RoundMode(0).String(),
		Mode(0).String(), SplitBrainPolicy(0).String(), EventKind(0).String(), msgType(0).String()} {
		if s != "invalid" {
			t.Errorf("zero value prints %q", s)
		}
	}
	if _, err := ParseMode("online"); err != nil {
		t.Error(err)
	}
	if _, err := ParseHashKind("md5"); err == nil {
		t.Error("md5 accepted")
	}
	if p, err := ParseSplitBrainPolicy("discard-zero-changes"); err != nil || p != SplitBrainDiscardZeroChanges {
		t.Error(p, err)
	}
	if _, err := ParseSplitBrainPolicy("keep-primary"); err == nil {
		t.Error("keep-primary accepted: it would discard a side's writes silently")
	}
}
