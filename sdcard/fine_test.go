package sdcard

import (
	"bytes"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
)

// An entry answers only for the content it was made for: another coarse
// sum, a torn entry or a cache of another block size gives nothing.
func TestFineCacheEntries(t *testing.T) {
	dir := t.TempDir()
	store := DirStore(dir)
	c, err := openFineCache(store, HashXXH3, 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	block := bytes.Repeat([]byte("fine sums "), 6554)[:64<<10]
	coarse, fine := HashXXH3.Sum(block), FineSums(HashXXH3, block)
	for _, b := range []uint64{3, 4, 5, 9} {
		c.put(b, coarse, fine)
	}
	for _, b := range []uint64{3, 4, 5, 9} {
		got, ok := c.get(b, coarse, nil) // get flushes a run it reads from
		if !ok || len(got) != len(fine) || got[7] != fine[7] {
			t.Fatalf("block %d: %v %d sums", b, ok, len(got))
		}
	}
	if _, ok := c.get(4, HashXXH3.Sum(block[1:]), nil); ok {
		t.Error("an entry answered for another content")
	}
	if _, ok := c.get(6, coarse, nil); ok {
		t.Error("a block never written answered")
	}
	if err := c.close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, FineFile)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	c2, _ := openFineCache(store, HashXXH3, 64<<10)
	f.WriteAt([]byte{0xff}, c2.off(5)+100) // torn: a fine sum of block 5 changed
	f.Close()
	if _, ok := c2.get(5, coarse, nil); ok {
		t.Error("a torn entry answered")
	}
	if _, ok := c2.get(9, coarse, nil); !ok {
		t.Error("the cache did not survive a reopen")
	}
	c2.close()
	c3, err := openFineCache(store, HashXXH3, 128<<10)
	if err != nil {
		t.Fatal(err)
	}
	defer c3.close()
	if _, ok := c3.get(0, coarse, nil); ok {
		t.Error("an entry of another block size answered")
	}
	if st, _ := os.Stat(path); st.Size() != fineHeader {
		t.Errorf("a cache of another block size was kept: %d bytes", st.Size())
	}
}

// readCount counts the reads of a stamping device.
type readCount struct {
	*stampDev
	reads atomic.Int64
}

func (d *readCount) ReadAt(p []byte, off int64) (int, error) {
	d.reads.Add(1)
	return d.stampDev.ReadAt(p, off)
}

// A checksum round after an initial sync is answered without reading the
// target's device: the coarse sums from the sum cache, the fine sums from
// the fine-sum cache (filled from the initial sync's records), and the
// sums after the round from the source's block sums. Rounds that rewrite
// the same blocks again find the entries the block sums updated.
func TestFineCacheSparesReads(t *testing.T) {
	const size = 4<<20 + 12288
	la, lb := freeAddrs(t)
	a := newNode(t, randomDev(size, 1), la, lb, nil)
	bdev := NewMemDevice(size)
	rc := &readCount{stampDev: &stampDev{MemDevice: bdev}}
	b := newNode(t, bdev, lb, la, func(c *MirrorConfig) { c.Dev = rc })
	if _, err := a.m.NewGeneration(1); err != nil {
		t.Fatal(err)
	}
	a.m.SetPrimary(true)
	a.start(t)
	b.start(t)
	waitInSync(t, a, b)
	waitRounds(t, b, 1)
	for k := uint64(2); k <= 4; k++ {
		r0 := rc.reads.Load()
		for _, off := range []int64{4096, 5*65536 + 8192, 20*65536 + 61440, size - 4096} {
			if _, err := a.dev.WriteAt(bytes.Repeat([]byte{byte(k)}, 4096), off); err != nil {
				t.Fatal(err)
			}
		}
		syncRound(t, a, b, k)
		if n := rc.reads.Load() - r0; n != 0 {
			t.Errorf("round %d read the target's device %d times", k, n)
		}
		if r := b.m.Status().LastRound; r.Records != 4 {
			t.Errorf("round %d: %d records, want the 4 sub-blocks", k, r.Records)
		}
	}
}

// A peer that knows only alpnCompressed gets no block sums; the target
// then reads back what the round changed in part, and rounds work.
func TestBlockSumsOlderPeer(t *testing.T) {
	const size = 2 << 20
	la, lb := freeAddrs(t)
	a := newNode(t, randomDev(size, 2), la, lb, nil)
	b := newNode(t, NewMemDevice(size), lb, la, nil)
	b.m.tlsConf.NextProtos = []string{alpnCompressed}
	if _, err := a.m.NewGeneration(1); err != nil {
		t.Fatal(err)
	}
	a.m.SetPrimary(true)
	a.start(t)
	b.start(t)
	waitInSync(t, a, b)
	waitRounds(t, b, 1)
	if _, err := a.dev.WriteAt(bytes.Repeat([]byte{1}, 4096), 3*65536+4096); err != nil {
		t.Fatal(err)
	}
	syncRound(t, a, b, 2)
}

// A full round (the initial sync) reads the source's device readAhead
// bytes at a time instead of a block at a time, the image's short tail
// included, and the copy is exact.
func TestFullRoundReadsAhead(t *testing.T) {
	const size = 4<<20 + 12288
	la, lb := freeAddrs(t)
	adev := randomDev(size, 3)
	rc := &readCount{stampDev: &stampDev{MemDevice: adev}}
	a := newNode(t, adev, la, lb, func(c *MirrorConfig) { c.Dev = rc })
	b := newNode(t, NewMemDevice(size), lb, la, nil)
	if _, err := a.m.NewGeneration(1); err != nil {
		t.Fatal(err)
	}
	a.m.SetPrimary(true)
	a.start(t)
	b.start(t)
	waitInSync(t, a, b)
	waitRounds(t, b, 1)
	blocks := int64(size+DefaultBlockSize-1) / DefaultBlockSize
	if n := rc.reads.Load(); n > int64(size)/readAhead+4 {
		t.Errorf("the initial sync read the source's device %d times for %d blocks, want about %d", n, blocks, int64(size)/readAhead+1)
	}
}
