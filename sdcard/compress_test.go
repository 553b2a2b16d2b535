package sdcard

import (
	"bytes"
	"context"
	"fmt"
	"testing"
)

// textDev is a device of log-like text: it compresses well.
func textDev(size int64) *MemDevice {
	d := NewMemDevice(size)
	var b bytes.Buffer
	for i := 0; int64(b.Len()) < size; i++ {
		fmt.Fprintf(&b, "2026-12-05T04:%02d:%02d.%03dZ camera %d: frame stored, %d bytes, exposure %d us\n",
			i/3600%60, i/60%60, i%1000, i%7, 40000+i*37%9000, 100+i%900)
	}
	d.WriteAt(b.Bytes()[:size], 0)
	return d
}

func TestCodecRoundTrip(t *testing.T) {
	c := codec{block: 64 << 10, level: DefaultZstdLevel}
	defer c.close()
	p := textDev(64 << 10).Bytes()
	z, err := c.compress(p)
	if err != nil || z == nil || len(z) >= len(p)/2 {
		t.Fatalf("compress: %d bytes, %v", len(z), err)
	}
	z = bytes.Clone(z)
	got, err := c.decompress(z)
	if err != nil || !bytes.Equal(got, p) {
		t.Fatalf("decompress: %v", err)
	}
	if z, _ := c.compress(randomDev(64<<10, 3).Bytes()); z != nil {
		t.Error("random bytes were sent compressed")
	}
	small := codec{block: 4096, level: DefaultZstdLevel}
	defer small.close()
	if _, err := small.decompress(z); err == nil {
		t.Error("a record larger than a block was accepted")
	}
}

func pairWith(t *testing.T, devA, devB *MemDevice, modA, modB func(*MirrorConfig)) (a, b *node) {
	la, lb := freeAddrs(t)
	a = newNode(t, devA, la, lb, modA)
	b = newNode(t, devB, lb, la, modB)
	if _, err := a.m.NewGeneration(1); err != nil {
		t.Fatal(err)
	}
	a.m.SetPrimary(true)
	a.start(t)
	b.start(t)
	return a, b
}

// Both nodes negotiate compression: the initial sync of text goes in far
// fewer bytes than the data, and the copy is exact.
func TestCompressionNegotiated(t *testing.T) {
	const size = 2 << 20
	zstdOn := func(c *MirrorConfig) { c.Compression = CompressionZstd }
	a, b := pairWith(t, textDev(size), NewMemDevice(size), zstdOn, nil)
	waitInSync(t, a, b)
	if !bytes.Equal(a.dev.Bytes(), b.dev.Bytes()) {
		t.Fatal("images differ")
	}
	r := a.m.Status().LastRound
	if r.DataBytes != size || r.WireBytes > size/3 {
		t.Fatalf("round %+v: want %d data bytes in under a third of the wire", r, size)
	}
	// A later round (through the journal) compresses too.
	a.dev.WriteAt(textDev(size).Bytes()[:256<<10], 1<<20+4096)
	st, err := a.m.SyncNow(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.dev.Bytes(), b.dev.Bytes()) {
		t.Fatal("images differ after the round")
	}
	if st.WireBytes >= st.DataBytes {
		t.Errorf("round %+v: not compressed", st)
	}
}

// A peer of an older version (no application protocol offered) gets plain
// records from a node set to compress, and the sync works.
func TestCompressionOlderPeer(t *testing.T) {
	const size = 2 << 20
	zstdOn := func(c *MirrorConfig) { c.Compression = CompressionZstd }
	la, lb := freeAddrs(t)
	a := newNode(t, textDev(size), la, lb, zstdOn)
	b := newNode(t, NewMemDevice(size), lb, la, nil)
	b.m.tlsConf.NextProtos = nil // as before alpnCompressed existed
	if _, err := a.m.NewGeneration(1); err != nil {
		t.Fatal(err)
	}
	a.m.SetPrimary(true)
	a.start(t)
	b.start(t)
	waitInSync(t, a, b)
	if !bytes.Equal(a.dev.Bytes(), b.dev.Bytes()) {
		t.Fatal("images differ")
	}
	if r := a.m.Status().LastRound; r.WireBytes < r.DataBytes {
		t.Fatalf("round %+v: compressed records went to a peer that cannot read them", r)
	}
}
