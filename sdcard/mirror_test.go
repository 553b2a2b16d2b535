package sdcard

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// freeAddrs returns two loopback addresses with free ports, sorted.
func freeAddrs(t testing.TB) (string, string) {
	var out []string
	for range 2 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, l.Addr().String())
		defer l.Close() // both held open, so the two ports differ
	}
	slices.Sort(out)
	return out[0], out[1]
}

type node struct {
	m      *Mirror
	dev    *MemDevice
	cancel context.CancelFunc
	done   chan error
}

func (n *node) start(t testing.TB) {
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	n.done = make(chan error, 1)
	go func() { n.done <- n.m.Run(ctx) }()
}

func (n *node) stop(t testing.TB) {
	if n.cancel == nil {
		return
	}
	n.cancel()
	n.cancel = nil
	select {
	case err := <-n.done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
}

func newNode(t testing.TB, dev *MemDevice, listen, peer string, mod func(*MirrorConfig)) *node {
	t.Helper()
	cfg := MirrorConfig{
		Dev: dev, BlockSize: 64 << 10, StateDir: t.TempDir(), PairKey: testKey,
		ListenAddr: listen, PeerAddr: peer, Mode: ModePeriodic, Interval: time.Hour,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, ReplyTimeout: 10 * time.Second,
	}
	if mod != nil {
		mod(&cfg)
	}
	m, err := NewMirror(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	n := &node{m: m, dev: dev}
	t.Cleanup(func() { n.stop(t); m.Close() })
	return n
}

func randomDev(size int64, seed uint64) *MemDevice {
	d := NewMemDevice(size)
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	d.WriteAt(b, 0)
	return d
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// pair starts a primary a (random data) and a fresh secondary b.
func pair(t *testing.T, size int64, mod func(*MirrorConfig)) (a, b *node) {
	la, lb := freeAddrs(t)
	a = newNode(t, randomDev(size, 1), la, lb, mod)
	b = newNode(t, NewMemDevice(size), lb, la, mod)
	if _, err := a.m.NewGeneration(1); err != nil {
		t.Fatal(err)
	}
	a.m.SetPrimary(true)
	a.start(t)
	b.start(t)
	return a, b
}

func waitInSync(t *testing.T, a, b *node) {
	t.Helper()
	waitFor(t, "in-sync", func() bool {
		return a.m.Status().State == MirrorInSync && b.m.Status().State == MirrorInSync
	})
}

func TestInitialSyncThenChanges(t *testing.T) {
	const size = 8<<20 + 12288 // a short last block
	a, b := pair(t, size, nil)
	waitInSync(t, a, b)
	if !bytes.Equal(a.dev.Bytes(), b.dev.Bytes()) {
		t.Fatal("images differ after the initial sync")
	}
	// The target never held data: every block went without a sum scan.
	if r := a.m.Status().LastRound; r.Mode != RoundBitmap || r.Scanned != 0 || r.Blocks != size/65536+1 {
		t.Errorf("initial sync %+v: want every block sent without a sum scan", r)
	}
	// ... streamed whole (a random block: one record each, no fine sums),
	// straight to the device of a target that never held data.
	if r := a.m.Status().LastRound; r.Records != r.Blocks || r.DataBytes != size {
		t.Errorf("initial sync %+v: want one whole-block record per block", r)
	}
	if r := b.m.Status().LastRound; !r.InPlace {
		t.Errorf("initial sync %+v: want it written in place, not journalled", r)
	}
	sameBase := func(when string) {
		t.Helper()
		a.m.mu.Lock()
		ba := a.m.meta.BaseSum
		a.m.mu.Unlock()
		b.m.mu.Lock()
		bb := b.m.meta.BaseSum
		b.m.mu.Unlock()
		if ba != bb || ba == (Sum{}) {
			t.Errorf("%s: base digests %x (source) and %x (target) differ", when, ba, bb)
		}
	}
	sameBase("initial sync")
	sa, sb := a.m.Status(), b.m.Status()
	if sb.Data != DataUpToDate || sb.Generation != sa.Generation {
		t.Fatalf("secondary status %+v, primary generation %x", sb, sa.Generation)
	}

	// Change three 4 KiB pieces in two blocks, zero a whole block.
	w := func(off int64, p []byte) {
		if _, err := a.dev.WriteAt(p, off); err != nil {
			t.Fatal(err)
		}
	}
	w(5*4096, bytes.Repeat([]byte{7}, 4096))
	w(6*4096, bytes.Repeat([]byte{8}, 4096))
	w(40*65536+4096, bytes.Repeat([]byte{9}, 4096))
	w(70*65536, make([]byte, 65536))
	st, err := a.m.SyncNow(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.dev.Bytes(), b.dev.Bytes()) {
		t.Fatal("images differ after the round")
	}
	if st.Blocks != 3 || st.Records != 4 || st.DataBytes != 3*4096 {
		t.Errorf("round %+v, want 3 blocks, 4 records, 12288 data bytes", st)
	}
	if st.WireBytes > 3*4096+size/65536*16+8<<10 {
		t.Errorf("round used %d wire bytes", st.WireBytes)
	}
	sameBase("round")
	diff, err := b.m.Verify(context.Background())
	if err != nil || len(diff) != 0 {
		t.Fatalf("Verify = %v, %v", diff, err)
	}
	w(3*65536, []byte("x"+string(make([]byte, 511))))
	w(100*65536, []byte("y"+string(make([]byte, 511))))
	diff, err = a.m.Verify(context.Background())
	if err != nil || !slices.Equal(diff, []uint64{3, 100}) {
		t.Fatalf("Verify = %v, %v; want [3 100]", diff, err)
	}
}

func TestWrongKeyWritesNothing(t *testing.T) {
	la, lb := freeAddrs(t)
	a := newNode(t, randomDev(1<<20, 1), la, lb, nil)
	b := newNode(t, NewMemDevice(1<<20), lb, la, func(c *MirrorConfig) {
		c.PairKey = []byte("another pair's key, 32 bytes...")
	})
	if _, err := a.m.NewGeneration(1); err != nil {
		t.Fatal(err)
	}
	a.m.SetPrimary(true)
	a.start(t)
	b.start(t)
	var got []EventKind
	timeout := time.After(3 * time.Second)
loop:
	for {
		select {
		case e := <-b.m.Events():
			got = append(got, e.Kind)
			if e.Kind == EventPeerRejected {
				break loop
			}
		case e := <-a.m.Events():
			got = append(got, e.Kind)
			if e.Kind == EventPeerRejected {
				break loop
			}
		case <-timeout:
			t.Fatalf("no rejection event, got %v", got)
		}
	}
	time.Sleep(300 * time.Millisecond)
	if !IsZero(b.dev.Bytes()) {
		t.Fatal("a peer with another key wrote data")
	}
	if s := b.m.Status(); s.State != MirrorConnecting || s.Generation != 0 {
		t.Fatalf("status %+v", s)
	}
}

func TestSplitBrainNeedsOperator(t *testing.T) {
	t.Run("keep local on the primary", func(t *testing.T) { splitBrain(t, true) })
	t.Run("discard local on the secondary", func(t *testing.T) { splitBrain(t, false) })
}

func splitBrain(t *testing.T, keepOnA bool) {
	a, b := pair(t, 2<<20, nil)
	waitInSync(t, a, b)
	// Cut the pair; both become primary and write.
	a.stop(t)
	b.stop(t)
	if _, err := b.m.NewGeneration(2); err != nil {
		t.Fatal(err)
	}
	b.m.SetPrimary(true)
	b.dev.WriteAt(bytes.Repeat([]byte{1}, 4096), 0)
	if _, err := a.m.NewGeneration(2); err != nil {
		t.Fatal(err)
	}
	a.dev.WriteAt(bytes.Repeat([]byte{2}, 4096), 8192)
	bBefore := b.dev.Bytes()
	b.m.SetPrimary(false) // the role engine demotes b
	a.start(t)
	b.start(t)
	waitFor(t, "split-brain", func() bool {
		return a.m.Status().State == MirrorSplitBrain && b.m.Status().State == MirrorSplitBrain
	})
	for e := range a.m.Events() {
		if e.Kind == EventSplitBrain {
			if e.Local.Current == e.Remote.Current || e.Remote.Current != b.m.Status().Generation {
				t.Fatalf("split brain event %+v", e)
			}
			break
		}
	}
	time.Sleep(200 * time.Millisecond)
	if !bytes.Equal(bBefore, b.dev.Bytes()) {
		t.Fatal("data written during split brain")
	}
	if _, err := a.m.SyncNow(context.Background()); err == nil {
		t.Fatal("SyncNow succeeded in split brain")
	}
	// The operator keeps a's data, from a's side or from b's.
	if err := b.m.Resolve(context.Background(), true); err == nil && !keepOnA {
		// b is secondary: keeping b's data means telling a (primary) to
		// discard, which a refuses; nothing changes.
		time.Sleep(100 * time.Millisecond)
		if a.m.Status().State != MirrorSplitBrain {
			t.Fatal("a primary discarded its data")
		}
	}
	var err error
	if keepOnA {
		err = a.m.Resolve(context.Background(), true)
	} else {
		err = b.m.Resolve(context.Background(), false)
	}
	if err != nil {
		t.Fatal(err)
	}
	waitInSync(t, a, b)
	if !bytes.Equal(a.dev.Bytes(), b.dev.Bytes()) {
		t.Fatal("images differ after resolution")
	}
}

// partition runs the partition story on a synced pair: a (primary)
// loses its peer and starts a generation, as does b, which takes over;
// aWrites and bWrites say who writes meanwhile. On reconnection a has been
// demoted by the role engine (b's epoch is higher).
func partition(t *testing.T, policy SplitBrainPolicy, aWrites, bWrites bool) (a, b *node, aBefore []byte) {
	t.Helper()
	a, b = pair(t, 2<<20, func(c *MirrorConfig) { c.SplitBrain = policy })
	waitInSync(t, a, b)
	a.stop(t)
	b.stop(t)
	if _, err := a.m.NewGeneration(1); err != nil { // lost its peer
		t.Fatal(err)
	}
	if aWrites {
		a.dev.WriteAt(bytes.Repeat([]byte{0xaa}, 8192), 3*65536)
	}
	if _, err := b.m.NewGeneration(2); err != nil { // took over
		t.Fatal(err)
	}
	b.m.SetPrimary(true)
	if bWrites {
		b.dev.WriteAt(bytes.Repeat([]byte{0xbb}, 4096), 65536)
	}
	a.m.SetPrimary(false)
	aBefore = a.dev.Bytes()
	a.start(t)
	b.start(t)
	return a, b, aBefore
}

func TestSplitBrainDiscardZeroChanges(t *testing.T) {
	a, b, _ := partition(t, SplitBrainDiscardZeroChanges, false, true)
	waitFor(t, "a resolves toward b and receives its data", func() bool {
		sa, sb := a.m.Status(), b.m.Status()
		return sa.State == MirrorInSync && sa.Generation == sb.Generation && sa.Data == DataUpToDate
	})
	if !bytes.Equal(a.dev.Bytes(), b.dev.Bytes()) {
		t.Fatal("images differ after the automatic resolution")
	}
	resolved := false
	for len(a.m.Events()) > 0 {
		if e := <-a.m.Events(); e.Kind == EventSplitBrainResolved {
			resolved = true
		}
	}
	if !resolved {
		t.Error("no split-brain-resolved event on the side that discarded")
	}
}

func TestSplitBrainBothChangedWaits(t *testing.T) {
	for _, policy := range []SplitBrainPolicy{SplitBrainDiscardZeroChanges, SplitBrainManual} {
		t.Run(policy.String(), func(t *testing.T) {
			a, b, aBefore := partition(t, policy, true, true)
			waitFor(t, "split brain", func() bool {
				return a.m.Status().State == MirrorSplitBrain && b.m.Status().State == MirrorSplitBrain
			})
			time.Sleep(300 * time.Millisecond)
			if a.m.Status().State != MirrorSplitBrain {
				t.Fatal("the split brain ended by itself")
			}
			if !bytes.Equal(a.dev.Bytes(), aBefore) {
				t.Fatal("a's partition-time writes were overwritten")
			}
		})
	}
}

func TestSplitBrainManualWaitsForUnchanged(t *testing.T) {
	a, _, aBefore := partition(t, SplitBrainManual, false, true)
	waitFor(t, "split brain", func() bool { return a.m.Status().State == MirrorSplitBrain })
	time.Sleep(300 * time.Millisecond)
	if a.m.Status().State != MirrorSplitBrain || !bytes.Equal(a.dev.Bytes(), aBefore) {
		t.Fatal("manual policy resolved by itself")
	}
}

// An unchanged primary cannot discard its data; the changed secondary's
// data is not overwritten either: the operator decides.
func TestSplitBrainUnchangedPrimaryWaits(t *testing.T) {
	a, _, aBefore := partition(t, SplitBrainDiscardZeroChanges, true, false)
	waitFor(t, "split brain", func() bool { return a.m.Status().State == MirrorSplitBrain })
	time.Sleep(300 * time.Millisecond)
	if a.m.Status().State != MirrorSplitBrain || !bytes.Equal(a.dev.Bytes(), aBefore) {
		t.Fatal("the changed secondary's data was replaced")
	}
}

func TestTakeoverReversesDirection(t *testing.T) {
	a, b := pair(t, 2<<20, nil)
	waitInSync(t, a, b)
	a.stop(t)
	// b takes over and writes; a returns as secondary and must receive.
	if _, err := b.m.NewGeneration(2); err != nil {
		t.Fatal(err)
	}
	b.m.SetPrimary(true)
	a.m.SetPrimary(false)
	b.dev.WriteAt(bytes.Repeat([]byte{3}, 8192), 65536)
	a.start(t)
	waitFor(t, "a receives", func() bool {
		s := a.m.Status()
		return s.State == MirrorInSync && s.Generation == b.m.Status().Generation
	})
	if !bytes.Equal(a.dev.Bytes(), b.dev.Bytes()) {
		t.Fatal("images differ")
	}
}

func TestSecondariesSendNothing(t *testing.T) {
	la, lb := freeAddrs(t)
	a := newNode(t, randomDev(1<<20, 1), la, lb, nil)
	b := newNode(t, NewMemDevice(1<<20), lb, la, nil)
	a.m.NewGeneration(1) // newer data, but not primary
	a.start(t)
	b.start(t)
	waitFor(t, "connected", func() bool { return b.m.Status().State == MirrorBehind })
	time.Sleep(200 * time.Millisecond)
	if !IsZero(b.dev.Bytes()) {
		t.Fatal("a secondary sent data")
	}
	if _, err := b.m.SyncNow(context.Background()); err != nil {
		t.Fatal(err) // asks the peer, which is not primary: nothing happens
	}
	time.Sleep(200 * time.Millisecond)
	if !IsZero(b.dev.Bytes()) {
		t.Fatal("a secondary sent data on request")
	}
}

func TestBitmapRound(t *testing.T) {
	a, b := pair(t, 4<<20, func(c *MirrorConfig) { c.Mode = ModeOnline; c.Interval = 0 })
	waitInSync(t, a, b)
	p := bytes.Repeat([]byte{5}, 4096)
	for _, off := range []int64{0, 65536 * 3, 65536*3 + 8192, 65536 * 60} {
		if _, err := a.m.WriteAt(p, off); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.m.WriteAt(p, 0); err == nil {
		t.Fatal("a secondary accepted a write")
	}
	if s := a.m.Status(); s.Behind != 3 || s.State != MirrorBehind {
		t.Fatalf("status %+v, want 3 blocks behind", s)
	}
	if err := a.m.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := a.m.Status().LastRound; st.Mode != RoundBitmap || st.Scanned != 0 || st.Blocks != 3 || st.DataBytes != 4*4096 {
		t.Fatalf("round %+v", st)
	}
	if !bytes.Equal(a.dev.Bytes(), b.dev.Bytes()) {
		t.Fatal("images differ")
	}
	// A write that bypassed the mirror is not in the bitmap: `pairguard
	// sync` compares all the same and finds it.
	a.dev.WriteAt(p, 65536*10)
	st, err := a.m.SyncNow(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode != RoundChecksum || st.Blocks != 1 || !bytes.Equal(a.dev.Bytes(), b.dev.Bytes()) {
		t.Fatalf("sync after a write outside the mirror: round %+v, images equal %v", st, bytes.Equal(a.dev.Bytes(), b.dev.Bytes()))
	}
}

// Status says in-sync only while a completed round proved it: never while
// the peer holds another generation.
func TestInSyncOnlyWhenProven(t *testing.T) {
	a, b := pair(t, 2<<20, nil)
	waitInSync(t, a, b)
	if _, err := a.m.NewGeneration(7); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		ga := a.m.Gen().Current
		if a.m.Status().State == MirrorInSync && b.m.Gen().Current != ga {
			t.Fatalf("in-sync while the peer holds %016x and this node %016x", b.m.Gen().Current, ga)
		}
		time.Sleep(time.Millisecond)
	}
	waitInSync(t, a, b)
}

func TestJournalOverflowGoesInPlace(t *testing.T) {
	a, b := pair(t, 4<<20, func(c *MirrorConfig) { c.JournalLimit = 256 << 10 })
	waitInSync(t, a, b)
	for len(b.m.Events()) > 0 {
		<-b.m.Events()
	}
	// 1 MiB of changes after the initial sync: four times the journal.
	a.dev.WriteAt(bytes.Repeat([]byte{0x5a}, 1<<20), 1<<20)
	go a.m.SyncNow(context.Background())
	var sawInconsistent, sawInPlace bool
	waitFor(t, "in-sync", func() bool {
		for {
			select {
			case e := <-b.m.Events():
				sawInconsistent = sawInconsistent || e.Kind == EventInconsistent
				sawInPlace = sawInPlace || e.Kind == EventRoundDone && e.Round.InPlace
				continue
			default:
			}
			break
		}
		return sawInPlace && a.m.Status().State == MirrorInSync && b.m.Status().State == MirrorInSync
	})
	if !sawInconsistent {
		t.Error("no inconsistent event")
	}
	if b.m.Status().Data != DataUpToDate {
		t.Error("data not up-to-date after the round")
	}
	if !bytes.Equal(a.dev.Bytes(), b.dev.Bytes()) {
		t.Fatal("images differ")
	}
}

func TestBandwidthLimit(t *testing.T) {
	const size = 1 << 20
	start := time.Now()
	a, b := pair(t, size, func(c *MirrorConfig) { c.BandwidthLimit = 2 << 20 })
	waitInSync(t, a, b)
	// The limiter lets a burst of a quarter second's bytes through at once
	// (ratelimit.go): the rest, 1 MiB - 512 KiB at 2 MiB/s, takes 256 ms.
	if el := time.Since(start); el < 250*time.Millisecond {
		t.Fatalf("1 MiB at 2 MiB/s took %v", el)
	}
}

func TestReconnect(t *testing.T) {
	a, b := pair(t, 1<<20, nil)
	waitInSync(t, a, b)
	b.stop(t)
	waitFor(t, "connecting", func() bool { return a.m.Status().State == MirrorConnecting })
	a.dev.WriteAt(bytes.Repeat([]byte{4}, 4096), 0)
	b.start(t)
	waitFor(t, "resynced", func() bool { return bytes.Equal(a.dev.Bytes(), b.dev.Bytes()) })
}

func TestCommandsWithoutRun(t *testing.T) {
	la, lb := freeAddrs(t)
	a := newNode(t, randomDev(1<<20, 1), la, lb, nil)
	if _, err := a.m.SyncNow(context.Background()); err != ErrNotConnected {
		t.Fatalf("SyncNow without Run: %v", err)
	}
	if s := a.m.Status(); s.State != MirrorOff || s.Data != DataInconsistent {
		t.Fatalf("status %+v", s)
	}
	g, err := a.m.NewGeneration(3)
	if err != nil || g.Current == 0 || g.Data != DataUpToDate || a.m.Status().Epoch != 3 {
		t.Fatalf("NewGeneration = %+v, %v", g, err)
	}
	h, _ := a.m.NewGeneration(4)
	if h.History[0] != g.Current {
		t.Fatalf("history %x does not start with %x", h.History, g.Current)
	}
	a.start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := a.m.Verify(ctx); err != ErrNotConnected {
		t.Fatalf("Verify without a peer: %v", err)
	}
}

// TestWireBudget is issue 5's budget at a small scale: a 1% random 4 KiB
// change costs at most 1.5× the changed bytes plus 1 MiB of hashes per GiB.
func TestWireBudget(t *testing.T) {
	const size = 32 << 20
	a, b := pair(t, size, nil)
	waitInSync(t, a, b)
	r := rand.New(rand.NewPCG(7, 8))
	picked := map[int64]bool{}
	for len(picked) < size/4096/100 {
		picked[r.Int64N(size/4096)] = true
	}
	p := make([]byte, 4096)
	for i := range picked {
		for j := range p {
			p[j] = byte(r.Uint32())
		}
		a.dev.WriteAt(p, i*4096)
	}
	st, err := a.m.SyncNow(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	changed := uint64(len(picked)) * 4096
	budget := changed*3/2 + size/1024 // 1 MiB per GiB
	if st.WireBytes > budget || st.DataBytes != changed {
		t.Fatalf("wire %d bytes (budget %d), data %d (changed %d)", st.WireBytes, budget, st.DataBytes, changed)
	}
	t.Logf("changed %d, wire %d (%.3f×)", changed, st.WireBytes, float64(st.WireBytes)/float64(changed))
	if !bytes.Equal(a.dev.Bytes(), b.dev.Bytes()) {
		t.Fatal("images differ")
	}
}

// TestConcurrentCommands runs verifies from both sides and syncs at once:
// every call returns (nil or ErrBusy), nothing deadlocks, data ends equal.
func TestConcurrentCommands(t *testing.T) {
	a, b := pair(t, 4<<20, nil)
	waitInSync(t, a, b)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	errc := make(chan error, 30)
	for i := range 10 {
		a.dev.WriteAt(bytes.Repeat([]byte{byte(i)}, 4096), int64(i)*65536)
		go func() { _, err := a.m.Verify(ctx); errc <- err }()
		go func() { _, err := b.m.Verify(ctx); errc <- err }()
		go func() { _, err := a.m.SyncNow(ctx); errc <- err }()
	}
	for range 30 {
		if err := <-errc; err != nil && !errors.Is(err, ErrBusy) {
			t.Fatal(err)
		}
	}
	if _, err := a.m.SyncNow(ctx); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.dev.Bytes(), b.dev.Bytes()) {
		t.Fatal("images differ")
	}
}

func TestStatusDuringRound(t *testing.T) {
	const size = 4 << 20
	la, lb := freeAddrs(t)
	slow := func(c *MirrorConfig) { c.BandwidthLimit = 4 << 20 }
	a := newNode(t, randomDev(size, 1), la, lb, slow)
	b := newNode(t, NewMemDevice(size), lb, la, slow)
	a.m.NewGeneration(1)
	a.m.SetPrimary(true)
	a.start(t)
	b.start(t)
	var seen []Status
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := a.m.Status()
		if s.State == MirrorSyncing && s.Percent > 50 && s.Percent < 100 && s.Rate > 0 && s.ETA > 0 {
			break
		}
		seen = append(seen, s)
		if s.State == MirrorInSync || time.Now().After(deadline) {
			t.Fatalf("never saw the data phase in progress; saw %d states, last %+v", len(seen), s)
		}
		time.Sleep(5 * time.Millisecond)
	}
	waitInSync(t, a, b)
	for {
		select {
		case e := <-b.m.Events():
			if e.Kind == EventRoundDone {
				if e.Round.Blocks != size/65536 || e.Round.DataBytes != size || e.Round.Duration <= 0 {
					t.Fatalf("round event %+v", e.Round)
				}
				return
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no round event")
		}
	}
}

// TestGarbageFromAuthenticatedPeer sends malformed frames over a valid
// TLS connection: the mirror drops the connection, writes nothing and
// keeps serving.
func TestGarbageFromAuthenticatedPeer(t *testing.T) {
	la, lb := freeAddrs(t)
	// b listens (its address sorts higher); we play a.
	b := newNode(t, NewMemDevice(1<<20), lb, la, nil)
	b.start(t)
	tc, _ := TLSConfig(testKey)
	r := rand.New(rand.NewPCG(1, 2))
	hello := helloMsg{Version: ProtocolVersion, NodeID: 5, Size: 1 << 20, BlockSize: 65536, Hash: HashXXH3,
		Primary: true, Gen: GenInfo{Current: 9, Data: DataUpToDate}}
	frames := [][]byte{
		{0, 0, 0, 0, 1},             // zero length
		{0xff, 0xff, 0xff, 0xff, 1}, // oversized
	}
	for range 20 {
		p := make([]byte, r.IntN(64))
		for i := range p {
			p[i] = byte(r.Uint32())
		}
		f := binary.LittleEndian.AppendUint32(nil, uint32(len(p)+1))
		frames = append(frames, append(append(f, byte(1+r.IntN(16))), p...))
	}
	// A round start whose data record points beyond the device.
	bad := newFrameBuf(msgHello, hello.append(nil))
	bad = append(bad, newFrameBuf(msgRoundStart, encodeRoundStart(roundStartMsg{Round: 1, Mode: RoundBitmap, Source: hello}))...)
	bad = append(bad, newFrameBuf(msgData, dataMsg{Block: 1 << 30, Sub: 0, Bytes: make([]byte, 4096)}.append(nil))...)
	for i, f := range append(frames, bad) {
		var c net.Conn
		var err error
		for range 50 {
			if c, err = tls.Dial("tcp", lb, tc); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			t.Fatal(err)
		}
		if i < len(frames) {
			c.Write(newFrameBuf(msgHello, hello.append(nil)))
		}
		c.Write(f)
		// b drops us, or ignores a stray frame and keeps the session.
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		io.Copy(io.Discard, c)
		c.Close()
	}
	if !IsZero(b.dev.Bytes()) || b.m.Status().Generation != 0 {
		t.Fatal("garbage changed the datastore")
	}
	// Still serving: a real primary syncs.
	a := newNode(t, randomDev(1<<20, 3), la, lb, nil)
	a.m.NewGeneration(1)
	a.m.SetPrimary(true)
	a.start(t)
	waitInSync(t, a, b)
}

func newFrameBuf(t msgType, p []byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, uint32(len(p)+1))
	return append(append(b, byte(t)), p...)
}

func TestRoundStatsString(t *testing.T) {
	full := RoundStats{Round: 1, Mode: RoundBitmap, Sender: true, Blocks: 256, DataBytes: 1 << 24}.String()
	if strings.Contains(full, "of 0") || !strings.Contains(full, "256 blocks sent without a sum scan") {
		t.Errorf("initial sync reads %q", full)
	}
	scan := RoundStats{Round: 2, Mode: RoundChecksum, Scanned: 256, Blocks: 3}.String()
	if !strings.Contains(scan, "round 2 received (checksum): 3 of 256 blocks differed") {
		t.Errorf("checksum round reads %q", scan)
	}
}

func TestLostPeerStartsOneGeneration(t *testing.T) {
	a, b := pair(t, 1<<20, nil)
	waitInSync(t, a, b)
	synced := a.m.Gen().Current
	g, started, err := a.m.LostPeer(2)
	if err != nil || !started || g.Current == synced || g.History[0] != synced {
		t.Fatalf("first loss: %v started %v err %v; want a new generation over %016x", g, started, err, synced)
	}
	// The peer is known to hold the older generation now: a second loss
	// before any round (a flapping link) starts none.
	a.stop(t)
	if g2, started, err := a.m.LostPeer(3); err != nil || started || g2.Current != g.Current {
		t.Fatalf("second loss: %v started %v err %v; want none", g2, started, err)
	}
	if _, started, _ := b.m.LostPeer(3); started {
		t.Fatal("a secondary started a generation")
	}
	// Without any exchange since the start the peer may hold the current
	// generation: a new one starts.
	la, lb := freeAddrs(t)
	c := newNode(t, randomDev(1<<20, 5), la, lb, nil)
	c.m.NewGeneration(1)
	c.m.SetPrimary(true)
	if _, started, err := c.m.LostPeer(2); err != nil || !started {
		t.Fatalf("unknown peer: started %v err %v", started, err)
	}
}

func TestDeviceFailureWhileRunning(t *testing.T) {
	la, lb := freeAddrs(t)
	a := newNode(t, randomDev(1<<20, 1), la, lb, nil)
	if a.m.Status().DeviceErr != nil {
		t.Fatal("a working device reported failed")
	}
	a.dev.Fail(syscall.EIO)
	if err := a.m.CheckDevice(); err == nil {
		t.Fatal("CheckDevice found a failing device working")
	}
	if a.m.Status().DeviceErr == nil {
		t.Fatal("status does not show the failed device")
	}
	a.dev.Fail(nil)
	if err := a.m.CheckDevice(); err != nil || a.m.Status().DeviceErr != nil {
		t.Fatalf("the device works again but: %v, status %v", err, a.m.Status().DeviceErr)
	}
	var kinds []EventKind
	for len(a.m.Events()) > 0 {
		kinds = append(kinds, (<-a.m.Events()).Kind)
	}
	if !slices.Contains(kinds, EventDeviceFailed) || !slices.Contains(kinds, EventDeviceBack) {
		t.Errorf("events %v, want device-failed and device-back", kinds)
	}
	// A round's I/O error marks the device failed as well.
	a.dev.Fail(syscall.EIO)
	a.m.dev.ReadAt(make([]byte, 4096), 0)
	if a.m.Status().DeviceErr == nil {
		t.Error("a read error during operation is not reported")
	}
	// A device that opens but cannot be read is refused.
	dev := NewMemDevice(1 << 20)
	dev.Fail(syscall.EIO)
	_, err := NewMirror(MirrorConfig{Dev: dev, StateDir: t.TempDir(), PairKey: testKey, ListenAddr: la, PeerAddr: lb,
		Mode: ModePeriodic, Interval: time.Hour}, testLogger(t))
	if !errors.Is(err, ErrNoDevice) {
		t.Errorf("NewMirror on an unreadable device: %v, want ErrNoDevice", err)
	}
}

// An apply that fails part-way leaves the receiver inconsistent (not
// eligible) with the committed journal kept; the next round applies it
// first. Before the fix the node stayed up-to-date on a mixed image and
// the next round truncated the journal that could repair it.
func TestApplyFailureLeavesInconsistent(t *testing.T) {
	a, b := pair(t, 2<<20, nil)
	waitInSync(t, a, b)
	for i := range 8 {
		a.dev.WriteAt(bytes.Repeat([]byte{byte(i + 1)}, 4096), int64(i)*65536*2)
	}
	b.dev.FailWritesAfter(3, syscall.EIO)
	if _, err := a.m.SyncNow(context.Background()); err == nil {
		t.Fatal("a round whose apply failed succeeded")
	}
	if st := b.m.Status(); st.Data != DataInconsistent {
		t.Fatalf("after a failed apply the receiver is %v, want inconsistent", st.Data)
	}
	meta, err := LoadMeta(b.m.store, b.m.geom)
	if err != nil || meta.Gen.Data != DataInconsistent {
		t.Fatalf("persisted data state %v (%v), want inconsistent", meta.Gen.Data, err)
	}
	if !b.m.journal.Pending() {
		t.Fatal("the committed journal was dropped")
	}
	b.dev.FailWritesAfter(-1, nil)
	waitFor(t, "the receiver recovers", func() bool {
		a.m.SyncNow(context.Background())
		return b.m.Status().Data == DataUpToDate && bytes.Equal(a.dev.Bytes(), b.dev.Bytes())
	})
}

// A flood of connections to the mirror's port: at most MaxHandshakes run
// at once, the rest are closed unanswered, and bytes that are not TLS are
// reported as a rejected peer with the peer's address.
func TestHandshakeFloodIsBounded(t *testing.T) {
	la, lb := freeAddrs(t)
	// The node with the higher address listens.
	a := newNode(t, NewMemDevice(1<<20), lb, la, nil)
	a.start(t)
	// Silent connections hold their handshake until its timeout.
	var held []net.Conn
	t.Cleanup(func() {
		for _, c := range held {
			c.Close()
		}
	})
	dial := func() net.Conn {
		t.Helper()
		for end := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			c, err := net.Dial("tcp", lb)
			if err == nil {
				return c
			}
			if time.Now().After(end) {
				t.Fatal(err)
			}
		}
	}
	for range MaxHandshakes + 8 {
		held = append(held, dial())
	}
	waitFor(t, "connections beyond MaxHandshakes refused", func() bool { return a.m.Refused() >= 8 })
	// The refused ones were closed: a read ends at once.
	last := held[len(held)-1]
	last.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := last.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a connection beyond the cap is still open: %v", err)
	}
	// Freed places take new handshakes: garbage is a rejected peer.
	for _, c := range held[:MaxHandshakes] {
		c.Close()
	}
	held = nil
	var junk net.Conn
	for end := time.Now().Add(5 * time.Second); ; {
		junk = dial()
		junk.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
		select {
		case e := <-a.m.Events():
			if e.Kind == EventPeerRejected {
				junk.Close()
				if e.Text != "127.0.0.1" {
					t.Errorf("rejected peer's source %q, want 127.0.0.1", e.Text)
				}
				return
			}
		case <-time.After(500 * time.Millisecond):
		}
		junk.Close()
		if time.Now().After(end) {
			t.Fatal("bytes that are not TLS were not reported as a rejected peer")
		}
	}
}

// A round under way when the receiver takes over must not land: before,
// a round started by the old primary before a partition was committed
// after the spare had taken over, replacing its new generation (and the
// data it wrote) with the old primary's, so the reconnection found no
// split brain.
func TestRoundOvertakenByTakeover(t *testing.T) {
	const size = 1 << 20
	// A slow round: every block differs, at 1 MiB/s. (The limit is taken
	// when a connection starts: set after it, it slowed nothing, and a
	// fast round could commit before the takeover below.)
	a, b := pair(t, size, func(c *MirrorConfig) { c.BandwidthLimit = 1 << 20 })
	waitInSync(t, a, b)
	for off := int64(0); off < size; off += 4096 {
		a.dev.WriteAt(bytes.Repeat([]byte{0xa5}, 4096), off)
	}
	before := bytes.Clone(b.dev.Bytes())
	done := make(chan error, 1)
	go func() { _, err := a.m.SyncNow(context.Background()); done <- err }()
	waitFor(t, "the round under way on the receiver", func() bool { return b.m.Status().State == MirrorSyncing })
	g, err := b.m.NewGeneration(2) // the receiver takes over mid-round
	if err != nil {
		t.Fatal(err)
	}
	b.m.SetPrimary(true)
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the round did not end")
	}
	if got := b.m.Gen(); got.Current != g.Current || got.Data != DataUpToDate {
		t.Fatalf("after the takeover the receiver holds %v, want its own %v", got, g)
	}
	if !bytes.Equal(b.dev.Bytes(), before) {
		t.Fatal("the overtaken round wrote to the new primary's device")
	}
}
