package online

import (
	"bytes"
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pairguard/pairguard/sdcard"
)

// fakeClock is the Primary's clock in these tests: it moves only when the
// test moves it, so "the application wrote heavily in the last 100 ms"
// is decided by the test, not by the machine's speed.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Add(d time.Duration) { c.ns.Add(int64(d)) }

func TestPacer(t *testing.T) {
	c := newFakeClock()
	var pa pacer
	const perWindow = heavyRate * int64(paceWindow) / int64(time.Second)
	if pa.heavy(c.Now()) {
		t.Fatal("heavy before any write")
	}
	pa.wrote(c.Now(), perWindow-1)
	if pa.heavy(c.Now()) {
		t.Fatal("heavy below heavyRate")
	}
	pa.wrote(c.Now(), 1)
	if !pa.heavy(c.Now()) {
		t.Fatal("not heavy at heavyRate")
	}
	c.Add(paceWindow) // the previous window still counts
	if !pa.heavy(c.Now()) {
		t.Fatal("not heavy in the window after a heavy one")
	}
	c.Add(paceWindow)
	if pa.heavy(c.Now()) {
		t.Fatal("heavy after a quiet window")
	}
	pa.wrote(c.Now(), perWindow)
	c.Add(3 * paceWindow) // a long pause: the old window is forgotten
	if pa.heavy(c.Now()) {
		t.Fatal("heavy after a long pause")
	}
	// The throttled resync: one record of n bytes per n/minResyncRate.
	now := c.Now()
	pa.sent(now, minResyncRate/4)
	if got := pa.next.Sub(now); got != time.Second/4 {
		t.Fatalf("next after a quarter second's bytes: %v", got)
	}
	pa.sent(now, minResyncRate/4)
	if got := pa.next.Sub(now); got != time.Second/2 {
		t.Fatalf("next after two records: %v", got)
	}
	c.Add(time.Second) // idle: no credit saved up beyond now
	pa.sent(c.Now(), minResyncRate/4)
	if got := pa.next.Sub(c.Now()); got != time.Second/4 {
		t.Fatalf("next after an idle second: %v", got)
	}
}

// aheadPair is an async pull-ahead primary with a 256 KiB queue and a
// frozen clock, whose peer has fallen behind: a 1 MiB write at 0 went to
// the held secondary, the next one at 1 MiB found the queue full. The
// secondary is released again and has applied everything queued; the
// application wrote 2 MiB in the clock's current window (heavily), so the
// resync is throttled and waits for the clock.
type aheadRig struct {
	p        *Primary
	s        *Secondary
	pn, sn   node
	clk      *fakeClock
	r        *rand.Rand
	resynced int64 // p.resynced when the peer fell behind
}

func newAheadRig(t *testing.T) *aheadRig {
	t.Helper()
	const size = 32 << 20
	pn, sn := newNode(size), newNode(size)
	gate := gateDev{sn.dev, new(sync.RWMutex)}
	p, err := OpenPrimary(Config{Device: pn.dev, Store: pn.store, Replication: Async, PullAhead: true,
		FailoverTime: 300 * time.Millisecond, MaxQueue: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	clk := newFakeClock()
	p.now = clk.Now // before any goroutine of p reads it
	s, _ := OpenSecondary(gate, sn.store, nil)
	connect(t, p, s)
	waitInSync(t, p)
	g := &aheadRig{p: p, s: s, pn: pn, sn: sn, clk: clk, r: rand.New(rand.NewPCG(21, 22))}
	p.mu.Lock()
	g.resynced = p.resynced
	p.mu.Unlock()

	gate.hold.Lock()
	g.write(t, 0, 1<<20)     // queued, held by the secondary
	g.write(t, 1<<20, 1<<20) // finds the queue full: marked, the peer falls behind
	if st := p.Status(); !st.Connected || st.InSync {
		gate.hold.Unlock()
		t.Fatalf("after a write finding the queue full: %+v", st)
	}
	gate.hold.Unlock()
	g.waitParked(t, 0)
	return g
}

func (g *aheadRig) write(t *testing.T, off int64, n int) {
	t.Helper()
	if _, err := g.p.WriteAt(randBytes(g.r, n), off); err != nil {
		t.Fatal(err)
	}
}

func (g *aheadRig) parks() uint64 {
	g.p.mu.Lock()
	defer g.p.mu.Unlock()
	return g.p.pace.parks
}

// waitParked waits until everything queued is acknowledged and the
// throttled resync decided to wait (again) after parks waits.
func (g *aheadRig) waitParked(t *testing.T, parks uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for g.p.Status().Queued != 0 || g.parks() <= parks {
		if time.Now().After(deadline) {
			t.Fatalf("the resync did not wait for the minimum rate: %+v, %d waits", g.p.Status(), g.parks())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (g *aheadRig) dirty(off, n int64) bool {
	g.p.mu.Lock()
	defer g.p.mu.Unlock()
	from, to := blockRange(off, n)
	for i := from; i < to; i++ {
		if !g.p.dirty.get(i) {
			return false
		}
	}
	return true
}

// catchUp lets the application be quiet (the clock moves on by a
// second, no writes) and waits for the resync to finish at full speed;
// then both copies are the same and the secondary holds the primary's
// generation, up to date.
func (g *aheadRig) catchUp(t *testing.T) {
	t.Helper()
	g.clk.Add(time.Second)
	waitInSync(t, g.p)
	for g.p.Status().Queued != 0 {
		time.Sleep(2 * time.Millisecond)
	}
	if !bytes.Equal(g.pn.dev.Bytes(), g.sn.dev.Bytes()) {
		t.Fatal("the copies differ after catching up")
	}
	if gen := g.s.Gen(); gen.Data != sdcard.DataUpToDate || gen.Current != g.p.Status().Gen.Current {
		t.Fatalf("secondary after catching up: %v", gen)
	}
}

// Once the peer is behind (pull-ahead), a write that finds room in the
// queue is still only marked, not streamed: the secondary stays
// inconsistent and lacks it until the resync sent it. Once the
// application is quiet the resync catches up, and writes after that are
// streamed again.
func TestPullAheadMarksUntilCaughtUp(t *testing.T) {
	g := newAheadRig(t)
	if gen := g.s.Gen(); gen.Data != sdcard.DataInconsistent {
		t.Fatalf("a peer behind is %v, not inconsistent", gen.Data)
	}
	// The queue is empty now; the writes fit in it, yet they are marked.
	const base, n = 8 << 20, 64 << 10
	for i := range 20 {
		g.write(t, base+int64(i)*n, n)
	}
	if st := g.p.Status(); st.Queued != 0 || st.InSync {
		t.Fatalf("writes while behind were queued: %+v", st)
	}
	for i := range 20 {
		if !g.dirty(base+int64(i)*n, n) {
			t.Fatalf("write %d while behind is not marked dirty", i)
		}
	}
	if g.s.Gen().Data != sdcard.DataInconsistent {
		t.Fatal("the secondary became consistent while behind")
	}
	g.catchUp(t)
	g.write(t, base, n)
	if g.dirty(base, n) {
		t.Fatal("a write after catching up was only marked")
	}
	if st := g.p.Status(); !st.InSync {
		t.Fatalf("a write after catching up put the peer behind: %+v", st)
	}
}

// While the application writes heavily, the resync sends at the minimum
// rate only (so the line and the CPU stay with the application); it
// moves on nonetheless, and catches up at full speed once the
// application is quiet.
func TestPullAheadResyncYields(t *testing.T) {
	g := newAheadRig(t)
	start := g.clk.Now()
	const steps, n = 10, 64 << 10
	for step := range steps {
		g.clk.Add(paceWindow)
		parks := g.parks()
		for i := range 8 { // 512 KiB in the window: above heavyRate
			g.write(t, 4<<20+int64(step*8+i)*n, n)
		}
		g.waitParked(t, parks)
	}
	g.p.mu.Lock()
	sent := g.p.resynced - g.resynced
	dirty := g.p.dirty.count
	g.p.mu.Unlock()
	elapsed := g.clk.Now().Sub(start)
	if most := int64(elapsed)*minResyncRate/int64(time.Second) + throttledChunk; sent > most {
		t.Fatalf("the resync sent %d bytes in %v of heavy writes, more than %d", sent, elapsed, most)
	}
	if sent < throttledChunk*steps/2 {
		t.Fatalf("the resync sent only %d bytes in %v", sent, elapsed)
	}
	if dirty == 0 {
		t.Fatal("nothing left to resync")
	}
	g.catchUp(t)
}

// A drain (swap) does not wait for the throttled resync: a peer behind
// catches up at full speed however heavily the application wrote.
func TestDrainLiftsThrottle(t *testing.T) {
	g := newAheadRig(t)
	for i := range 16 {
		g.write(t, 4<<20+int64(i)*(64<<10), 64<<10)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := g.p.Drain(ctx); err != nil {
		t.Fatalf("drain with the clock standing still: %v", err)
	}
	if !bytes.Equal(g.pn.dev.Bytes(), g.sn.dev.Bytes()) {
		t.Fatal("the copies differ after the drain")
	}
	if gen := g.s.Gen(); gen.Data != sdcard.DataUpToDate {
		t.Fatalf("secondary after the drain: %v", gen)
	}
}

// A record's buffer put back and taken again costs no allocation.
func TestRecPoolNoAlloc(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop buffers")
	}
	putBuf(getBuf(4096))
	putBuf(getBuf(1 << 20))
	if n := testing.AllocsPerRun(100, func() {
		putBuf(getBuf(4096))
		putBuf(getBuf(1 << 20))
	}); n != 0 {
		t.Fatalf("%v allocations per get and put", n)
	}
}
