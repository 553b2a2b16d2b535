package sdcard

import (
	"crypto/tls"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// A sender that stops in the middle of a round: the target, which reads
// the round's frames itself, still gives up after the reply timeout and
// drops the connection instead of waiting forever.
func TestTargetRoundReplyTimeout(t *testing.T) {
	const size = 1 << 20
	la, lb := freeAddrs(t) // b listens (la < lb dials)
	b := newNode(t, NewMemDevice(size), lb, la, func(c *MirrorConfig) { c.ReplyTimeout = 300 * time.Millisecond })
	b.start(t)
	conf, err := TLSConfig(testKey)
	if err != nil {
		t.Fatal(err)
	}
	conf = conf.Clone()
	conf.NextProtos = []string{alpnCompressed}
	var c *tls.Conn
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err = tls.Dial("tcp", lb, conf)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	defer c.Close()
	fc := newFrameConn(c)
	typ, p, err := fc.readFrame(nil)
	if err != nil || typ != msgHello {
		t.Fatalf("first frame %v, %v", typ, err)
	}
	peer, err := decodeHello(p)
	if err != nil {
		t.Fatal(err)
	}
	h := helloMsg{Version: peer.Version, NodeID: 99, Size: peer.Size, BlockSize: peer.BlockSize, Hash: peer.Hash,
		Primary: true, Gen: GenInfo{Current: 7, Data: DataUpToDate}}
	if err := fc.write(msgHello, h.append(nil)); err != nil {
		t.Fatal(err)
	}
	if err := fc.write(msgRoundStart, encodeRoundStart(roundStartMsg{Round: 1, Mode: RoundBitmap, Source: h})); err != nil {
		t.Fatal(err)
	}
	if err := fc.writeData(dataMsg{Block: 0, Sub: wholeBlock, Bytes: make([]byte, peer.BlockSize)}); err != nil {
		t.Fatal(err)
	}
	if err := fc.flush(); err != nil {
		t.Fatal(err)
	}
	// Send nothing more: the target must close within its reply timeout.
	start := time.Now()
	c.SetReadDeadline(start.Add(10 * time.Second))
	for {
		typ, _, err := fc.readFrame(nil)
		if err != nil {
			if waited := time.Since(start); waited > 5*time.Second {
				t.Fatalf("the target closed after %v (reply timeout 300ms): %v", waited, err)
			}
			break
		}
		if typ != msgHello {
			t.Fatalf("unexpected %v from the target", typ)
		}
	}
	if s := b.m.Status(); s.State == MirrorInSync {
		t.Fatalf("status %+v after an unfinished round", s)
	}
}

// The parallel sum scan gives every block's sum in order (a short last
// block included), and a read error ends it with that error.
func TestSumsParallelScan(t *testing.T) {
	const size = 3<<20 + 8192
	dev := randomDev(size, 7)
	la, lb := freeAddrs(t)
	n := newNode(t, dev, la, lb, func(c *MirrorConfig) { c.BlockSize = 16 << 10 })
	g := n.m.geom
	var calls atomic.Int64
	sums, err := n.m.sums(g, func(uint64) { calls.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	data := dev.Bytes()
	if uint64(len(sums)) != g.Blocks() {
		t.Fatalf("%d sums for %d blocks", len(sums), g.Blocks())
	}
	for b := range g.Blocks() {
		off, ln := g.Span(b)
		if sums[b] != HashXXH3.Sum(data[off:off+int64(ln)]) {
			t.Fatalf("sum of block %d differs", b)
		}
	}
	if calls.Load() == 0 {
		t.Error("no progress reported")
	}
	dev.Fail(syscall.EIO)
	if _, err := n.m.sums(g, nil); err == nil {
		t.Fatal("a failing device gave sums")
	}
}

// The differing blocks of a checksum round come in order, in batches, as
// the local scan passes them; blocks the peer has no sum for differ.
func TestDiffStream(t *testing.T) {
	const size = 2<<20 + 4096
	dev := randomDev(size, 9)
	la, lb := freeAddrs(t)
	n := newNode(t, dev, la, lb, func(c *MirrorConfig) { c.BlockSize = 16 << 10 })
	g := n.m.geom
	remote, err := n.m.sums(g, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []uint64{0, 5, 6, 7, 40, 127}
	for _, b := range want[:5] {
		remote[b][0] ^= 1
	}
	remote = remote[:127] // the peer's device is one block shorter
	if g.Blocks() != 129 {
		t.Fatalf("%d blocks", g.Blocks())
	}
	want = append(want, 128)
	for _, per := range []int{1, 3, 64} {
		d := &diffStream{local: make([]Sum, g.Blocks()), remote: remote, wake: make(chan struct{}, 1), end: make(chan error, 1)}
		go func() {
			_, err := n.m.sumsInto(d.local, g, func(k uint64) {
				d.mark.Store(k)
				select {
				case d.wake <- struct{}{}:
				default:
				}
			})
			d.end <- err
		}()
		var got []uint64
		for {
			b, err := d.batch(per)
			if err != nil {
				t.Fatal(err)
			}
			if len(b) == 0 {
				break
			}
			if len(b) > per {
				t.Fatalf("batch of %d, asked for %d", len(b), per)
			}
			got = append(got, b...)
		}
		if err := d.wait(); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) || d.count != uint64(len(want)) {
			t.Fatalf("batches of %d: differing %v (count %d), want %v", per, got, d.count, want)
		}
	}
	// A failing device ends the stream with the error.
	dev.Fail(syscall.EIO)
	d := &diffStream{local: make([]Sum, g.Blocks()), remote: remote, wake: make(chan struct{}, 1), end: make(chan error, 1)}
	go func() {
		_, err := n.m.sumsInto(d.local, g, nil)
		d.end <- err
	}()
	if _, err := d.batch(64); err == nil {
		t.Fatal("no error from a failing scan")
	}
}
