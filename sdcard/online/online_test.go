package online

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pairguard/pairguard/sdcard"
	"github.com/pairguard/pairguard/sdcard/sdcardtest"
)

type recStore struct{ sdcardtest.Store }

func (s recStore) OpenFile(name string) (sdcard.File, error) { return s.Store.OpenFile(name) }

func memStore() recStore { return recStore{sdcardtest.NewRecorder().Store()} }

// countDev counts syncs where the race detector sees it (the secondary
// syncs in its own goroutine, the acknowledgement comes over TCP).
type countDev struct {
	*sdcardtest.MemDevice
	syncs atomic.Int64
}

func (d *countDev) Sync() error {
	err := d.MemDevice.Sync()
	d.syncs.Add(1)
	return err
}

type node struct {
	dev   *countDev
	store recStore
}

func newNode(size int64) node {
	return node{&countDev{MemDevice: sdcardtest.NewMemDevice(size)}, memStore()}
}

func openPrimary(t *testing.T, n node, mode Replication) *Primary {
	t.Helper()
	p, err := OpenPrimary(Config{Device: n.dev, Store: n.store, Replication: mode, FailoverTime: 300 * time.Millisecond, ActiveExtents: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// connect attaches a secondary on n to p over a loopback TCP connection
// and returns a function that cuts the connection.
func connect(t *testing.T, p *Primary, s *Secondary) (cut func()) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	served := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			close(served)
			return
		}
		served <- c
		_ = s.Serve(context.Background(), c)
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Attach(c); err != nil {
		t.Fatal(err)
	}
	sc := <-served
	return func() { sc.Close(); c.Close() }
}

func waitInSync(t *testing.T, p *Primary) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !p.Status().InSync {
		if time.Now().After(deadline) {
			t.Fatalf("not in sync: %+v", p.Status())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestSyncWritesOnBothSides(t *testing.T) {
	const size = 16 << 20
	pn, sn := newNode(size), newNode(size)
	p := openPrimary(t, pn, Sync)
	s, err := OpenSecondary(sn.dev, sn.store, nil)
	if err != nil {
		t.Fatal(err)
	}
	connect(t, p, s)
	waitInSync(t, p)
	if g := s.Gen(); g.Current != p.Status().Gen.Current || g.Data != sdcard.DataUpToDate {
		t.Fatalf("secondary gen %v, primary %v", g, p.Status().Gen)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		n := (1 + r.IntN(64)) * 512
		off := int64(r.IntN((size-n)/512)) * 512
		if r.IntN(8) == 0 {
			if err := p.Zero(off, int64(n), false); err != nil {
				t.Fatal(err)
			}
		} else if _, err := p.WriteAt(randBytes(r, n), off); err != nil {
			t.Fatal(err)
		}
		// In sync mode an acknowledged write is on the secondary.
		want := make([]byte, n)
		got := make([]byte, n)
		pn.dev.ReadAt(want, off)
		sn.dev.ReadAt(got, off)
		if !bytes.Equal(want, got) {
			t.Fatalf("write at %d acknowledged but not on the secondary", off)
		}
	}
	syncs := sn.dev.syncs.Load()
	if err := p.Flush(); err != nil {
		t.Fatal(err)
	}
	if sn.dev.syncs.Load() <= syncs {
		t.Fatal("a FLUSH was acknowledged before the secondary synced")
	}
	if st := p.Status(); !st.InSync || st.Dirty != 0 {
		t.Fatalf("status %+v", st)
	}
}

func TestAsyncCatchesUp(t *testing.T) {
	const size = 16 << 20
	pn, sn := newNode(size), newNode(size)
	p := openPrimary(t, pn, Async)
	s, _ := OpenSecondary(sn.dev, sn.store, nil)
	connect(t, p, s)
	r := rand.New(rand.NewPCG(3, 4))
	for range 300 {
		n := (1 + r.IntN(256)) * 512
		off := int64(r.IntN((size-n)/512)) * 512
		if _, err := p.WriteAt(randBytes(r, n), off); err != nil {
			t.Fatal(err)
		}
	}
	waitInSync(t, p)
	deadline := time.Now().Add(10 * time.Second)
	for p.Status().Queued != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if !bytes.Equal(pn.dev.Bytes(), sn.dev.Bytes()) {
		t.Fatal("secondary differs after catching up")
	}
}

// A peer that reads but never acknowledges holds a sync write for at
// most failover-time; then it is dropped, the write becomes dirty, and a
// new generation is on disk before the write is acknowledged.
func TestSilentPeerDropped(t *testing.T) {
	const size = 16 << 20
	pn := newNode(size)
	p := openPrimary(t, pn, Sync)
	gen0 := p.Status().Gen
	a, b := net.Pipe()
	go func() {
		writeFrame(b, header{typ: msgHello}, appendGen(nil, sdcard.GenInfo{Data: sdcard.DataInconsistent}))
		io.Copy(io.Discard, b)
	}()
	if err := p.Attach(a); err != nil {
		t.Fatal(err)
	}
	gen1 := p.Status().Gen
	if gen1.Current == 0 || gen1.Current == gen0.Current {
		t.Fatalf("no generation at attach: %v", gen1)
	}
	start := time.Now()
	if _, err := p.WriteAt(bytes.Repeat([]byte{7}, 4096), 8192); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("write held %v", d)
	}
	st := p.Status()
	if st.Connected || !p.dirty.get(2) {
		t.Fatalf("peer not dropped or block not dirty: %+v", st)
	}
	m, err := sdcard.LoadMeta(pn.store, sdcard.Geometry{Size: size, BlockSize: sdcard.DefaultBlockSize})
	if err != nil {
		t.Fatal(err)
	}
	if m.Gen.Current == gen1.Current || m.Gen.History[0] != gen1.Current {
		t.Fatalf("persisted gen %v, want a new one after %v", m.Gen, gen1)
	}
}

// After a cut, only the blocks written meanwhile and the hot extents
// travel again.
func TestReconnectResyncsDirtyOnly(t *testing.T) {
	const size = 32 << 20
	pn, sn := newNode(size), newNode(size)
	r := rand.New(rand.NewPCG(5, 6))
	pn.dev.WriteAt(randBytes(r, size), 0)
	p := openPrimary(t, pn, Sync)
	s, _ := OpenSecondary(sn.dev, sn.store, nil)
	cut := connect(t, p, s)
	waitInSync(t, p)
	if !bytes.Equal(pn.dev.Bytes(), sn.dev.Bytes()) {
		t.Fatal("full resync incomplete")
	}
	g1 := p.Status().Gen.Current
	cut()
	// Writes while the peer is away: only marked.
	for i := range 10 {
		if _, err := p.WriteAt(randBytes(r, 4096), int64(i)*3*ExtentSize/2%size); err != nil {
			t.Fatal(err)
		}
	}
	if st := p.Status(); st.Connected || st.Gen.Current == g1 {
		t.Fatalf("after the cut: %+v", st)
	}
	for s.Attached() { // the old stream's end
		time.Sleep(time.Millisecond)
	}
	before := s.Applied()
	connect(t, p, s)
	waitInSync(t, p)
	if !bytes.Equal(pn.dev.Bytes(), sn.dev.Bytes()) {
		t.Fatal("secondary differs after the reconnection")
	}
	// At most the 2 active extents in 1 MiB records, the 10 blocks and Done.
	if n := s.Applied() - before; n > 2*4+10+1 {
		t.Fatalf("%d records resent, want only the dirty blocks", n)
	}
	if g := s.Gen(); g.Current != p.Status().Gen.Current || g.Data != sdcard.DataUpToDate {
		t.Fatalf("secondary gen %v", g)
	}
}

func TestSplitBrainRefused(t *testing.T) {
	const size = 8 << 20
	pn, sn := newNode(size), newNode(size)
	p := openPrimary(t, pn, Sync)
	s, _ := OpenSecondary(sn.dev, sn.store, nil)
	cut := connect(t, p, s)
	waitInSync(t, p)
	cut()
	for s.Attached() {
		time.Sleep(time.Millisecond)
	}
	p.WriteAt(make([]byte, 4096), 0)
	// The secondary became primary on its own meanwhile.
	s.meta.NewGeneration()
	s.meta.Save()
	a, b := net.Pipe()
	go s.Serve(context.Background(), b)
	if err := p.Attach(a); !errors.Is(err, ErrRefused) {
		t.Fatalf("attach with diverged generations: %v", err)
	}
}

func TestInconsistentNotPrimary(t *testing.T) {
	sn := newNode(8 << 20)
	s, _ := OpenSecondary(sn.dev, sn.store, nil)
	s.meta.NewGeneration()
	s.meta.Gen.Data = sdcard.DataInconsistent
	s.meta.Save()
	_, err := OpenPrimary(Config{Device: sn.dev, Store: sn.store, Replication: Sync, FailoverTime: time.Second})
	if !errors.Is(err, ErrInconsistent) {
		t.Fatalf("OpenPrimary on inconsistent data: %v", err)
	}
}

// A peer lost while a sync write waits for it (the connection breaks,
// not the write's timeout): the write is acknowledged without the peer,
// so a new generation must be on disk before it returns, even though
// drop has not finished yet.
func TestDropNewGenerationBeforeRelease(t *testing.T) {
	const size = 16 << 20
	pn := newNode(size)
	p, err := OpenPrimary(Config{Device: pn.dev, Store: pn.store, Replication: Sync, FailoverTime: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	written := make(chan struct{})
	p.dropHook = func() {
		select {
		case <-written:
		case <-time.After(5 * time.Second):
		}
	}
	a, b := net.Pipe()
	go func() {
		writeFrame(b, header{typ: msgHello}, appendGen(nil, sdcard.GenInfo{Data: sdcard.DataInconsistent}))
		buf := make([]byte, headerLen)
		h, err := readHeader(b, buf)
		if err == nil {
			_, err = readPayload(b, h) // Start
		}
		if err == nil {
			_, err = readHeader(b, buf) // the write
		}
		b.Close()
	}()
	if err := p.Attach(a); err != nil {
		t.Fatal(err)
	}
	gen1 := p.Status().Gen
	if _, err := p.WriteAt(bytes.Repeat([]byte{7}, 4096), 8192); err != nil {
		t.Fatal(err)
	}
	m, err := sdcard.LoadMeta(pn.store, sdcard.Geometry{Size: size, BlockSize: sdcard.DefaultBlockSize})
	close(written)
	if err != nil {
		t.Fatal(err)
	}
	if m.Gen.Current == gen1.Current {
		t.Fatalf("a write acknowledged without the peer before a new generation was on disk: %v", m.Gen)
	}
}
