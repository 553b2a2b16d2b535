package online

import (
	"bytes"
	"context"
	"testing"
	"time"
)

func TestTLSStream(t *testing.T) {
	const size = 8 << 20
	key := bytes.Repeat([]byte{1}, 32)
	pn, sn := newNode(size), newNode(size)
	p := openPrimary(t, pn, Sync)
	s, _ := OpenSecondary(sn.dev, sn.store, nil)
	l, err := Listen("127.0.0.1:0", key)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx, l)

	// A primary with another key never gets a stream.
	wrong, _ := Dialer(l.Addr().String(), bytes.Repeat([]byte{2}, 32), time.Second)
	if c, err := wrong(ctx); err == nil {
		if err := p.Attach(c); err == nil {
			t.Fatal("a peer with another pair key was attached")
		}
	}
	dial, _ := Dialer(l.Addr().String(), key, time.Second)
	go p.Run(ctx, dial)
	waitInSync(t, p)
	if _, err := p.WriteAt(bytes.Repeat([]byte{9}, 65536), 4096); err != nil {
		t.Fatal(err)
	}
	if err := p.Flush(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pn.dev.Bytes(), sn.dev.Bytes()) {
		t.Fatal("secondary differs after a synced write over TLS")
	}
}

// Drain waits for an async peer to hold everything.
func TestDrainAsync(t *testing.T) {
	const size = 8 << 20
	pn, sn := newNode(size), newNode(size)
	p := openPrimary(t, pn, Async)
	if err := p.Drain(context.Background()); err != ErrNoPeer {
		t.Fatalf("drain without a peer: %v", err)
	}
	s, _ := OpenSecondary(sn.dev, sn.store, nil)
	connect(t, p, s)
	for i := range 64 {
		p.WriteAt(bytes.Repeat([]byte{byte(i)}, 65536), int64(i)*65536)
	}
	syncs := sn.dev.syncs.Load()
	if err := p.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pn.dev.Bytes(), sn.dev.Bytes()) || sn.dev.syncs.Load() == syncs {
		t.Fatal("drained, but the secondary does not hold every write synced")
	}
}
