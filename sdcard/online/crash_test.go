package online

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/pairguard/pairguard/sdcard"
	"github.com/pairguard/pairguard/sdcard/sdcardtest"
)

// TestCrashPoints runs the write path over sdcardtest's recorder: the
// primary is in sync with a peer, the peer goes, and writes land in more
// extents than the activity log holds (so extents leave it and their
// bits go to the bitmap file). After a power cut at any point, reopening
// the primary must find dirty every block that differs from the peer's
// copy (so a reconnection resyncs all of it), the bitmap relative to the
// peer's generation, and, once a write was acknowledged, a new
// generation on disk.
func TestCrashPoints(t *testing.T) {
	const size = 16 << 20
	rng := rand.New(rand.NewPCG(7, 8))
	base := randBytes(rng, size)
	rec := sdcardtest.NewRecorder()
	dev := rec.Device("sd", base)
	store := recStore{rec.Store()}
	p, err := OpenPrimary(Config{Device: dev, Store: store, Replication: Sync, FailoverTime: time.Second, ActiveExtents: 2})
	if err != nil {
		t.Fatal(err)
	}
	sdev := sdcardtest.NewMemDevice(size)
	s, _ := OpenSecondary(sdev, memStore(), nil)
	cut := connect(t, p, s)
	waitInSync(t, p)
	peer := sdev.Bytes()
	peerGen := s.Gen().Current
	cut()
	for p.Status().Connected {
		time.Sleep(time.Millisecond)
	}
	k0 := rec.Ops()
	var acked []int // op count when each write was acknowledged
	for i := range 30 {
		e := []int{0, 1, 2, 3, 0, 2}[i%6]
		off := int64(e)*ExtentSize + int64(rng.IntN(ExtentSize/512-16))*512
		if _, err := p.WriteAt(randBytes(rng, 512*(1+rng.IntN(16))), off); err != nil {
			t.Fatal(err)
		}
		acked = append(acked, rec.Ops())
	}
	p.Close()
	if rec.Ops()-k0 < 60 {
		t.Fatalf("only %d operations recorded: the activity log never turned over", rec.Ops()-k0)
	}
	no := false
	points := 0
	for k := k0; k <= rec.Ops(); k++ {
		for v, keep := range []*bool{&no, nil} {
			state := rec.Crash(k, rand.New(rand.NewPCG(uint64(k), uint64(v))), keep)
			r2 := sdcardtest.NewRecorderFrom(state)
			d2 := r2.Device("sd", nil)
			st2 := recStore{r2.Store()}
			p2, err := OpenPrimary(Config{Device: d2, Store: st2, Replication: Sync, FailoverTime: time.Second, ActiveExtents: 2})
			if err != nil {
				t.Fatalf("point %d: reopen: %v", k, err)
			}
			got := d2.Bytes()
			for b := uint64(0); b < size/BlockSize; b++ {
				o := b * BlockSize
				if !bytes.Equal(got[o:o+BlockSize], peer[o:o+BlockSize]) && !p2.dirty.get(b) {
					t.Fatalf("point %d variant %d: block %d differs from the peer but is not dirty", k, v, b)
				}
			}
			g := p2.meta
			if !g.BitmapValid || g.SyncedGen != peerGen {
				t.Fatalf("point %d: bitmap valid %v relative to %x, peer holds %x", k, g.BitmapValid, g.SyncedGen, peerGen)
			}
			if k >= acked[0] && g.Gen.Current == peerGen {
				t.Fatalf("point %d: a write was acknowledged without the peer, and no new generation is on disk", k)
			}
			p2.Close()
			points++
		}
	}
	t.Logf("%d crash states checked over %d operations", points, rec.Ops()-k0)
}

// TestCrashedPrimaryReconnects: after a cut the reopened primary
// reattaches and the peer ends equal to it, with the resync limited to
// the dirty blocks.
func TestCrashedPrimaryReconnects(t *testing.T) {
	const size = 16 << 20
	rng := rand.New(rand.NewPCG(9, 10))
	rec := sdcardtest.NewRecorder()
	dev := rec.Device("sd", randBytes(rng, size))
	store := recStore{rec.Store()}
	p, _ := OpenPrimary(Config{Device: dev, Store: store, Replication: Sync, FailoverTime: time.Second, ActiveExtents: 2})
	sdev := sdcardtest.NewMemDevice(size)
	s, _ := OpenSecondary(sdev, memStore(), nil)
	cut := connect(t, p, s)
	waitInSync(t, p)
	for range 20 {
		off := int64(rng.IntN(size/512-8)) * 512
		p.WriteAt(randBytes(rng, 4096), off)
	}
	k := rec.Ops() - 1 // the last write's sync-less tail may be torn
	cut()
	p.Close()
	state := rec.Crash(k, rng, nil)
	r2 := sdcardtest.NewRecorderFrom(state)
	d2 := r2.Device("sd", nil)
	p2, err := OpenPrimary(Config{Device: d2, Store: recStore{r2.Store()}, Replication: Sync, FailoverTime: time.Second, ActiveExtents: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	before := s.Applied()
	a, b := net.Pipe()
	go s.Serve(context.Background(), b)
	if err := p2.Attach(a); err != nil {
		t.Fatal(err)
	}
	waitInSync(t, p2)
	if !bytes.Equal(d2.Bytes(), sdev.Bytes()) {
		t.Fatal("peer differs from the reopened primary")
	}
	if n := s.Applied() - before; n > 2*4+1 {
		t.Fatalf("%d records after a crash: more than the hot extents", n)
	}
	_ = sdcard.DataUpToDate
}
