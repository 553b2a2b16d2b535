package online

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/pairguard/pairguard/sdcard/sdcardtest"
)

// A sequential stream takes the next extents into the log with the one it
// enters: 16 extents written in order cost a few log transactions, not
// one each (each is a synced slot write that holds the stream back).
func TestStreamBatchesLog(t *testing.T) {
	const size = 64 << 20
	n := newNode(size)
	p, err := OpenPrimary(Config{Device: n.dev, Store: n.store, Replication: Sync, FailoverTime: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	seq0 := p.disk.seq
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(buf)) {
		if _, err := p.WriteAt(buf, off); err != nil {
			t.Fatal(err)
		}
	}
	if tx := p.disk.seq - seq0; tx > 4 {
		t.Fatalf("%d log transactions for a sequential pass over 16 extents", tx)
	}
	if p.Status().Active != 16 {
		t.Fatalf("%d extents active, want the 16 written", p.Status().Active)
	}
	// Random writes into extents not active do not take others along.
	p2, err := OpenPrimary(Config{Device: n.dev, Store: memStore(), Replication: Sync, FailoverTime: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	for _, e := range []int64{9, 2, 14, 5} {
		if _, err := p2.WriteAt(buf[:4096], e*ExtentSize); err != nil {
			t.Fatal(err)
		}
	}
	if a := p2.Status().Active; a != 4 {
		t.Fatalf("%d extents active after writes into 4 scattered ones", a)
	}
}

// Once the log is full, a stream evicts extents in batches: one device
// sync per transaction, not one per 4 MiB.
func TestStreamBatchesEviction(t *testing.T) {
	const size = 64 << 20
	n := newNode(size)
	p, err := OpenPrimary(Config{Device: n.dev, Store: n.store, Replication: Sync, FailoverTime: time.Second, ActiveExtents: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(buf)) {
		if _, err := p.WriteAt(buf, off); err != nil {
			t.Fatal(err)
		}
	}
	if s := n.dev.syncs.Load(); s > 4 {
		t.Fatalf("%d device syncs to evict 8 extents of a stream", s)
	}
	if a := p.Status().Active; a > 8 {
		t.Fatalf("%d extents active, over the log's 8", a)
	}
}

// After a power cut at any point of a stream whose extents were taken
// ahead and evicted in batches, every block that differs from what was
// there before is dirty on reopening.
func TestStreamCrashPoints(t *testing.T) {
	const size = 24 << 20 // 6 extents, the log holds 4
	rng := rand.New(rand.NewPCG(3, 4))
	base := randBytes(rng, size)
	rec := sdcardtest.NewRecorder()
	dev := rec.Device("sd", base)
	cfg := func(d *sdcardtest.Device, st recStore) Config {
		return Config{Device: d, Store: st, Replication: Sync, FailoverTime: time.Second, ActiveExtents: 4}
	}
	p, err := OpenPrimary(cfg(dev, recStore{rec.Store()}))
	if err != nil {
		t.Fatal(err)
	}
	k0 := rec.Ops()
	for off := int64(0); off < size; off += 1 << 20 {
		if _, err := p.WriteAt(randBytes(rng, 1<<20), off); err != nil {
			t.Fatal(err)
		}
	}
	p.Close()
	points := 0
	step := 6
	if raceEnabled {
		step = 20 // each point copies and compares the whole device
	}
	for k := k0; k <= rec.Ops(); k += 1 + rng.IntN(step) {
		state := rec.Crash(k, rand.New(rand.NewPCG(uint64(k), 1)), nil)
		r2 := sdcardtest.NewRecorderFrom(state)
		d2 := r2.Device("sd", nil)
		p2, err := OpenPrimary(cfg(d2, recStore{r2.Store()}))
		if err != nil {
			t.Fatalf("point %d: reopen: %v", k, err)
		}
		got := d2.Bytes()
		for b := uint64(0); b < size/BlockSize; b++ {
			o := b * BlockSize
			if !bytes.Equal(got[o:o+BlockSize], base[o:o+BlockSize]) && !p2.dirty.get(b) {
				t.Fatalf("point %d: block %d was written but is not dirty", k, b)
			}
		}
		p2.Close()
		points++
	}
	t.Logf("%d crash states checked over %d operations", points, rec.Ops()-k0)
}
