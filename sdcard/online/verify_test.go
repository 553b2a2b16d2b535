package online

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pairguard/pairguard/sdcard"
)

// Verify finds exactly the blocks that differ, and none while writes run
// concurrently (the secondary hashes a range after the writes before the
// Verify record, the primary with later writes to it held back).
func TestVerify(t *testing.T) {
	for _, mode := range []Replication{Sync, Async} {
		t.Run(mode.String(), func(t *testing.T) {
			const size = 8<<20 + 12288 // a short last verify block
			pn, sn := newNode(size), newNode(size)
			r := rand.New(rand.NewPCG(7, 8))
			pn.dev.WriteAt(randBytes(r, size), 0)
			p := openPatient(t, pn, mode)
			s, _ := OpenSecondary(sn.dev, sn.store, nil)
			connect(t, p, s)
			waitInSync(t, p)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()

			var wg sync.WaitGroup
			stop := make(chan struct{})
			for w := range 3 {
				wg.Go(func() {
					r := rand.New(rand.NewPCG(9, uint64(w)))
					for range 300 {
						select {
						case <-stop:
							return
						default:
						}
						n := (1 + r.IntN(32)) * 4096
						off := int64(r.IntN((size-n)/4096)) * 4096
						if _, err := p.WriteAt(randBytes(r, n), off); err != nil {
							t.Error(err)
							return
						}
					}
				})
			}
			for range 3 {
				diff, err := p.Verify(ctx)
				if err != nil || len(diff) != 0 {
					close(stop)
					wg.Wait()
					t.Fatalf("verify during writes: %v, blocks %v", err, diff)
				}
			}
			close(stop)
			wg.Wait()
			// (async: let the queued writes land first)
			if err := p.Drain(ctx); err != nil {
				t.Fatal(err)
			}

			// Change the secondary's copy behind the stream's back.
			for _, off := range []int64{3*VerifyBlock + 512, size - 512} {
				b := make([]byte, 512)
				sn.dev.ReadAt(b, off)
				b[100]++
				if _, err := sn.dev.WriteAt(b, off); err != nil {
					t.Fatal(err)
				}
			}
			diff, err := p.Verify(ctx)
			want := []uint64{3, size / VerifyBlock}
			if err != nil || !slices.Equal(diff, want) {
				t.Fatalf("verify: %v, blocks %v, want %v", err, diff, want)
			}
		})
	}
}

func TestVerifyNeedsPeer(t *testing.T) {
	p := openPrimary(t, newNode(1<<20), Sync)
	if _, err := p.Verify(context.Background()); !errors.Is(err, ErrNotInSync) {
		t.Fatalf("verify without a peer: %v", err)
	}
}

// splitBrain forms a pair, cuts it and gives both sides a new generation
// with a write each: the primary's next attach is refused.
func splitBrain(t *testing.T) (p *Primary, s *Secondary, pn, sn node) {
	const size = 8 << 20
	pn, sn = newNode(size), newNode(size)
	p = openPrimary(t, pn, Sync)
	s, _ = OpenSecondary(sn.dev, sn.store, nil)
	cut := connect(t, p, s)
	waitInSync(t, p)
	cut()
	for s.Attached() {
		time.Sleep(time.Millisecond)
	}
	p.WriteAt(make([]byte, 4096), 0)
	// The secondary became primary on its own meanwhile and wrote.
	s.meta.NewGeneration()
	s.meta.Save()
	sn.dev.WriteAt(bytes.Repeat([]byte{0xff}, 512), 4096*7)
	a, b := net.Pipe()
	served := make(chan struct{})
	go func() { s.Serve(context.Background(), b); close(served) }()
	if err := p.Attach(a); !errors.Is(err, ErrRefused) {
		t.Fatalf("attach with diverged generations: %v", err)
	}
	<-served
	if !p.Status().SplitBrain {
		t.Fatal("status does not show the split brain")
	}
	return p, s, pn, sn
}

func TestResolveDiscardOnSecondary(t *testing.T) {
	p, s, pn, sn := splitBrain(t)
	if err := p.Resolve(false); err == nil {
		t.Fatal("the primary discarded its own data")
	}
	if _, err := s.Resolve(true); err == nil {
		t.Fatal("the secondary kept its data against the primary")
	}
	old := s.Gen()
	got, err := s.Resolve(false)
	if err != nil || got.Current != old.Current {
		t.Fatalf("resolve: %v %v", got, err)
	}
	connect(t, p, s)
	waitInSync(t, p)
	if !slices.Equal(pn.dev.Bytes(), sn.dev.Bytes()) {
		t.Fatal("secondary differs after the resolution")
	}
	if st := p.Status(); st.SplitBrain {
		t.Fatal("split brain still shown")
	}
	if _, err := s.Resolve(false); !errors.Is(err, ErrNoSplitBrain) {
		t.Fatalf("resolve while attached: %v", err)
	}
}

func TestResolveKeepOnPrimary(t *testing.T) {
	p, s, pn, sn := splitBrain(t)
	if err := p.Resolve(true); err != nil {
		t.Fatal(err)
	}
	connect(t, p, s)
	waitInSync(t, p)
	if !slices.Equal(pn.dev.Bytes(), sn.dev.Bytes()) {
		t.Fatal("secondary differs after the resolution")
	}
	if g := s.Gen(); g.Current != p.Status().Gen.Current {
		t.Fatalf("secondary gen %v, primary %v", g, p.Status().Gen)
	}
	if err := p.Resolve(true); !errors.Is(err, ErrNoSplitBrain) {
		t.Fatalf("resolve without a split brain: %v", err)
	}
}

// TRIM and WRITE_ZEROES reach the secondary: both copies read back the
// same (zeroes) over the range, in both modes, and a trim while the peer
// is away is marked dirty and resynced.
func TestTrimOnBothSides(t *testing.T) {
	for _, mode := range []Replication{Sync, Async} {
		t.Run(mode.String(), func(t *testing.T) {
			const size = 24 << 20
			pn, sn := newNode(size), newNode(size)
			r := rand.New(rand.NewPCG(11, 12))
			pn.dev.WriteAt(randBytes(r, size), 0)
			p := openPatient(t, pn, mode)
			s, _ := OpenSecondary(sn.dev, sn.store, nil)
			cut := connect(t, p, s)
			waitInSync(t, p)
			ctx := context.Background()
			if err := p.Trim(4096, 9<<20); err != nil { // over two zero records
				t.Fatal(err)
			}
			if err := p.Zero(20<<20, 8192, true); err != nil {
				t.Fatal(err)
			}
			if err := p.Drain(ctx); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(pn.dev.Bytes(), sn.dev.Bytes()) {
				t.Fatal("the copies differ after a trim")
			}
			if !bytes.Equal(sn.dev.Bytes()[4096:4096+9<<20], make([]byte, 9<<20)) {
				t.Fatal("the trimmed range is not zero on the secondary")
			}
			cut()
			// Both ends must see the cut: an async trim the primary still
			// queues for a peer it has not dropped yet becomes dirty only
			// at the drop.
			for s.Attached() || p.Status().Connected {
				time.Sleep(time.Millisecond)
			}
			if err := p.Trim(16<<20, 1<<20); err != nil {
				t.Fatal(err)
			}
			if d := p.Status().Dirty; d < 256 {
				t.Fatalf("a trim without the peer marked %d blocks dirty", d)
			}
			connect(t, p, s)
			waitInSync(t, p)
			if !bytes.Equal(pn.dev.Bytes(), sn.dev.Bytes()) {
				t.Fatal("the copies differ after the resync of a trim")
			}
		})
	}
}

// openPatient opens a primary with a failover-time no loaded test
// machine reaches: the peer is never dropped for being slow.
func openPatient(t *testing.T, n node, mode Replication) *Primary {
	t.Helper()
	// and a queue an async writer here does not fill (it would fall
	// behind: Verify needs the peer in sync).
	p, err := OpenPrimary(Config{Device: n.dev, Store: n.store, Replication: mode, FailoverTime: time.Minute, ActiveExtents: 2,
		MaxQueue: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// gateDev holds writes while its lock is held.
type gateDev struct {
	*countDev
	hold *sync.RWMutex
}

func (g gateDev) WriteAt(b []byte, off int64) (int, error) {
	g.hold.RLock()
	defer g.hold.RUnlock()
	return g.countDev.WriteAt(b, off)
}

// An async primary with PullAhead whose queue to the peer is full does not wait for it:
// the writes are marked, the peer falls behind (inconsistent, not in
// sync, still connected), and once it catches up both copies match.
func TestAsyncFallsBehindAndCatchesUp(t *testing.T) {
	const size = 16 << 20
	pn, sn := newNode(size), newNode(size)
	gate := gateDev{sn.dev, new(sync.RWMutex)}
	p, err := OpenPrimary(Config{Device: pn.dev, Store: pn.store, Replication: Async, PullAhead: true,
		FailoverTime: 300 * time.Millisecond, MaxQueue: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	s, _ := OpenSecondary(gate, sn.store, nil)
	connect(t, p, s)
	waitInSync(t, p)
	gate.hold.Lock() // the secondary's writes wait from now on

	r := rand.New(rand.NewPCG(13, 14))
	for i := range 100 {
		if _, err := p.WriteAt(randBytes(r, 64<<10), int64(i%200)*(64<<10)); err != nil {
			t.Fatal(err)
		}
	}
	// 100 writes of 64 KiB: far beyond the queue, none waited for the
	// held secondary (a wait would have dropped it after failover-time).
	st := p.Status()
	if !st.Connected || st.InSync || st.Queued > 256<<10+resyncChunk+64<<10 {
		gate.hold.Unlock()
		t.Fatalf("status after writes beyond the queue: %+v", st)
	}
	gate.hold.Unlock()
	waitInSync(t, p)
	if !bytes.Equal(pn.dev.Bytes(), sn.dev.Bytes()) {
		t.Fatal("the copies differ after catching up")
	}
	if g := s.Gen(); g.Data != sdcard.DataUpToDate || g.Current != p.Status().Gen.Current {
		t.Fatalf("secondary after catching up: %v", g)
	}
}

// Without PullAhead (on-congestion = "block", the default) an async write
// finding the queue full waits for room: the peer only lags and stays
// consistent (up-to-date, never sent a Resync), so it can take over at any
// moment; once the line frees, both copies match.
func TestAsyncBlocksKeepsPeerConsistent(t *testing.T) {
	const size = 16 << 20
	pn, sn := newNode(size), newNode(size)
	gate := gateDev{sn.dev, new(sync.RWMutex)}
	p, err := OpenPrimary(Config{Device: pn.dev, Store: pn.store, Replication: Async,
		FailoverTime: 20 * time.Second, MaxQueue: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	s, _ := OpenSecondary(gate, sn.store, nil)
	connect(t, p, s)
	waitInSync(t, p)
	gate.hold.Lock() // the secondary's writes wait from now on

	done := make(chan error, 1)
	go func() {
		r := rand.New(rand.NewPCG(15, 16))
		for i := range 100 {
			if _, err := p.WriteAt(randBytes(r, 64<<10), int64(i%200)*(64<<10)); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	time.Sleep(200 * time.Millisecond)
	select {
	case err := <-done:
		gate.hold.Unlock()
		t.Fatalf("100 writes of 64 KiB past a 256 KiB queue did not wait for the held peer (err %v)", err)
	default:
	}
	if st := p.Status(); !st.Connected || st.Queued > 256<<10+64<<10 {
		gate.hold.Unlock()
		t.Fatalf("status while the peer is held: %+v", st)
	}
	gate.hold.Unlock()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if g := s.Gen(); g.Data != sdcard.DataUpToDate {
		t.Fatalf("a lagging async peer became %v", g.Data)
	}
	waitInSync(t, p)
	// In sync from the start: the last writes may still be on their way.
	deadline := time.Now().Add(10 * time.Second)
	for p.Status().Queued != 0 && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
	if !bytes.Equal(pn.dev.Bytes(), sn.dev.Bytes()) {
		t.Fatal("the copies differ after catching up")
	}
}
