package sdcard

import (
	"context"
	"crypto/sha256"
	"flag"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/pairguard/pairguard/sdcard/sdcardtest"
)

var crashPoints = flag.Int("crash-points", 150,
	"power-cut states TestCrashPoints checks (the issue's figure: -crash-points=600)")

// recStore adapts the recorder's store to Store.
type recStore struct{ sdcardtest.Store }

func (s recStore) OpenFile(name string) (File, error) { return s.Store.OpenFile(name) }

const (
	cpSize      = 1 << 20
	cpBlock     = 16 << 10
	cpJournalAt = 160 << 10 // a round larger than this goes in place
)

func crashCfg(dev BlockDevice, store Store, listen, peer string) MirrorConfig {
	return MirrorConfig{Dev: dev, Store: store, BlockSize: cpBlock, PairKey: testKey,
		ListenAddr: listen, PeerAddr: peer, Mode: ModePeriodic, Interval: time.Hour, JournalLimit: cpJournalAt,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, ReplyTimeout: 10 * time.Second}
}

// crashOutcome is what a recovery after a power cut shows.
type crashOutcome uint8

const (
	outcomeConsistent   crashOutcome = iota // data up-to-date or outdated, image of exactly that generation
	outcomeInconsistent                     // marked inconsistent: not eligible, resynced later
	outcomeTorn                             // up-to-date or outdated but the image is not its generation's
	outcomeFailed                           // the mirror did not open
)

// TestCrashPoints records everything a receiving node writes to its
// device and state directory through an initial sync, journalled rounds,
// a round larger than the journal (in place), a generation change of the
// source and a takeover, then cuts the power at many points of that
// history (keeping synced writes and any subset of the unsynced ones,
// sector by sector), recovers the way a restart does, and checks the
// image: the generation the metadata names, or inconsistent; never torn
// and up-to-date. Some recoveries are themselves cut at every step and
// recovered again (journal replay after a crash during replay).
func TestCrashPoints(t *testing.T) {
	rec := sdcardtest.NewRecorder()
	devB := rec.Device("b", make([]byte, cpSize))
	la, lb := freeAddrs(t)
	a := newNode(t, randomDev(cpSize, 21), la, lb, func(c *MirrorConfig) {
		c.BlockSize, c.JournalLimit = cpBlock, cpJournalAt
	})
	mb, err := NewMirror(crashCfg(devB, recStore{rec.Store()}, lb, la), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	b := &node{m: mb}
	t.Cleanup(func() { b.stop(t) })

	// gens maps every generation the receiver may name to the images it
	// held under it after a completed round (in periodic mode a generation
	// names several contents over time, one per round).
	gens := map[uint64]map[[32]byte]bool{}
	var gensMu sync.Mutex
	note := func() {
		gensMu.Lock()
		defer gensMu.Unlock()
		g := b.m.Gen().Current
		if gens[g] == nil {
			gens[g] = map[[32]byte]bool{}
		}
		gens[g][sha256.Sum256(devB.Bytes())] = true
	}
	// Every round the receiver completes counts, also one whose end the
	// source did not see (a SyncNow that failed under load and was
	// retried): the receiver then holds that image under its generation.
	stopWatch, watchDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(watchDone)
		for {
			select {
			case e := <-b.m.Events():
				if e.Kind == EventRoundDone {
					note()
				}
			case <-stopWatch:
				return
			}
		}
	}()
	if _, err := a.m.NewGeneration(1); err != nil {
		t.Fatal(err)
	}
	a.m.SetPrimary(true)
	a.start(t)
	b.start(t)
	r := rand.New(rand.NewPCG(7, 7))
	scribbleA := func(pieces, size int) {
		for range pieces {
			p := make([]byte, size)
			for i := range p {
				p[i] = byte(r.Uint32())
			}
			a.dev.WriteAt(p, int64(r.IntN(cpSize/size))*int64(size))
		}
	}
	round := func(what string) {
		t.Helper()
		for try := 0; ; try++ {
			_, err := a.m.SyncNow(context.Background())
			if err == nil {
				break
			}
			if try == 50 {
				t.Fatalf("%s: %v", what, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if a.m.Gen().Current != b.m.Gen().Current {
			t.Fatalf("%s: the receiver holds %016x, the source %016x", what, b.m.Gen().Current, a.m.Gen().Current)
		}
		note()
	}
	round("initial sync")
	for range 3 {
		scribbleA(6, 4096) // the content changes under the same generation, as in periodic mode
		round("small round")
	}
	scribbleA(1, 256<<10) // larger than the journal: in place
	round("in-place round")
	if _, err := a.m.NewGeneration(2); err != nil { // the source lost its peer once
		t.Fatal(err)
	}
	scribbleA(4, 4096)
	round("round after a generation change")
	b.stop(t)
	a.stop(t)
	close(stopWatch)
	<-watchDone
	if _, err := b.m.NewGeneration(3); err != nil { // the receiver takes over
		t.Fatal(err)
	}
	note()

	ops := rec.Ops()
	t.Logf("%d operations recorded on the receiver's device and state files", ops)
	counts := map[crashOutcome]int{}
	nested := 0
	all, none := true, false
	check := func(st sdcardtest.State) (crashOutcome, *sdcardtest.Recorder) {
		r2 := sdcardtest.NewRecorderFrom(st)
		dev := r2.Device("b", nil)
		m, err := NewMirror(crashCfg(dev, recStore{r2.Store()}, lb, la), testLogger(t))
		if err != nil {
			t.Errorf("recovery failed: %v", err)
			return outcomeFailed, r2
		}
		s := m.Status()
		m.Close()
		if s.Data == DataInconsistent {
			return outcomeInconsistent, r2
		}
		if !gens[s.Generation][sha256.Sum256(dev.Bytes())] {
			return outcomeTorn, r2
		}
		return outcomeConsistent, r2
	}
	n := *crashPoints
	for i := range n {
		k := i * (ops + 1) / n
		if n > ops+1 {
			k = r.IntN(ops + 1)
		}
		var keep *bool
		switch i % 4 {
		case 1:
			keep = &all
		case 2:
			keep = &none
		}
		st := rec.Crash(k, r, keep)
		out, r2 := check(st)
		counts[out]++
		if out == outcomeTorn {
			t.Errorf("crash point %d of %d (subset %d): a torn image reported usable", k, ops, i%4)
		}
		// A recovery that replayed a journal is cut again at every step.
		if rn := r2.Ops(); i%5 == 0 && rn > 4 {
			for k2 := 1; k2 < rn; k2 += max(1, rn/8) {
				o2, _ := check(r2.Crash(k2, r, nil))
				counts[o2]++
				nested++
				if o2 == outcomeTorn {
					t.Errorf("crash point %d, then %d of %d during recovery: a torn image reported usable", k, k2, rn)
				}
			}
		}
	}
	t.Logf("%d crash points (%d of them during a recovery): %d consistent, %d inconsistent, %d torn and usable, %d failed to open",
		n+nested, nested, counts[outcomeConsistent], counts[outcomeInconsistent], counts[outcomeTorn], counts[outcomeFailed])
}
