package daemon

import "testing"

func TestProcsFollowTheMirror(t *testing.T) {
	for _, c := range []struct {
		st     MirrorStatus
		online bool
		want   int
	}{
		{MirrorStatus{State: "off"}, false, 1},
		{MirrorStatus{State: "in-sync"}, false, 1},
		{MirrorStatus{State: "behind", Behind: 40}, false, 1}, // waits for the next round
		{MirrorStatus{State: "syncing"}, false, 4},
		{MirrorStatus{State: "behind", Rate: 1e6}, false, 4},
		{MirrorStatus{State: "in-sync"}, true, 4}, // the online write path
	} {
		if got := procsFor(c.st, c.online, 4); got != c.want {
			t.Errorf("%+v online %v: %d processors, want %d", c.st, c.online, got, c.want)
		}
	}
}
