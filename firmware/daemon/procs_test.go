package daemon

import (
	"testing"
	"time"
)

func TestProcsFollowTheMirrorAndTheLoad(t *testing.T) {
	for _, c := range []struct {
		st     MirrorStatus
		online bool
		cpu    float64
		want   int
	}{
		{MirrorStatus{State: "off"}, false, 0.05, 1},
		{MirrorStatus{State: "in-sync"}, false, 0.05, 1},
		{MirrorStatus{State: "behind", Behind: 40}, false, 0.05, 1}, // waits for the next round
		{MirrorStatus{State: "syncing"}, false, 0.05, 4},
		{MirrorStatus{State: "behind", Rate: 1e6}, false, 0.05, 4},
		{MirrorStatus{State: "in-sync"}, true, 0.05, 4}, // the online write path
		{MirrorStatus{State: "in-sync"}, false, 0.9, 4}, // a verify, CPU-bound Go code
	} {
		if got := procsFor(c.st, c.online, c.cpu, 4); got != c.want {
			t.Errorf("%+v online %v cpu %v: %d processors, want %d", c.st, c.online, c.cpu, got, c.want)
		}
	}
}

// All processors at once, one again only after procsQuiet quiet periods.
func TestProcsTunerHysteresis(t *testing.T) {
	p := &procsTuner{all: 2, cur: 2}
	for i := 1; i < procsQuiet; i++ {
		if n := p.next(1); n != 2 {
			t.Fatalf("quiet period %d: %d processors, want still 2", i, n)
		}
	}
	if p.cur = p.next(1); p.cur != 1 {
		t.Fatalf("after %d quiet periods: %d processors, want 1", procsQuiet, p.cur)
	}
	if p.cur = p.next(2); p.cur != 2 {
		t.Fatalf("busy: %d processors, want 2 at once", p.cur)
	}
	if p.cur = p.next(1); p.cur != 2 {
		t.Fatalf("one quiet period after busy: %d processors, want still 2", p.cur)
	}
}

func TestCPUTimeGrows(t *testing.T) {
	c0 := cpuTime()
	for end := time.Now().Add(20 * time.Millisecond); time.Now().Before(end); {
	}
	if c1 := cpuTime(); c1 <= c0 {
		t.Errorf("CPU time %v after 20 ms of work, before %v", c1, c0)
	}
}
