package sdcard

// The target's fine-sum cache: the fine sums of each block's content as
// this node last knew it, so that a fine request is answered without
// reading the device. An initial sync that bypassed the page cache would
// otherwise read every differing block of the next round from the disk.
//
// Each entry is keyed by content: it holds a block's coarse sum with the
// fine sums of the content that has that coarse sum, and it is used only
// when the coarse sum the target reported for the block in this round
// equals it. A stale entry (a block rewritten since, a crash before an
// entry was written) has another coarse sum and is ignored; an entry torn
// by a crash fails its checksum. So the file needs no fsync and no
// generation: it states facts about contents, not about the device, and
// the coarse sum it is matched against is the one the round trusts
// anyway (read from the device, or from the sum cache under its rules).

import (
	"encoding/binary"
	"hash/crc32"
)

// FineFile is the fine-sum cache's file name inside the state directory.
const FineFile = "mirror.fine"

// fineCache byte map (little endian):
//
//	header: magic "PGFINE01" | block size u32 | hash u8 | 3 zero bytes
//	entry of block b at 16 + b×size: coarse sum 16 | count u16 | count fine sums×16 (room for
//	        block size / 4096) | crc32c u32 of the entry before it
const (
	fineMagic  = "PGFINE01"
	fineHeader = 16
	fineRun    = 64 // entries gathered into one write
)

type fineCache struct {
	f    File
	h    HashKind
	subs int // fine sums per entry
	esz  int
	rbuf []byte

	// a run of consecutive entries not yet written
	run   []byte
	first uint64
	n     int
}

// openFineCache opens the cache in store for blocks of blockSize and
// hash h, emptying it when it was made for others.
func openFineCache(store Store, h HashKind, blockSize int) (*fineCache, error) {
	f, err := store.OpenFile(FineFile)
	if err != nil {
		return nil, err
	}
	subs := blockSize / FineSize
	c := &fineCache{f: f, h: h, subs: subs, esz: 16 + 2 + 16*subs + 4}
	c.rbuf = make([]byte, c.esz)
	hdr := make([]byte, fineHeader)
	want := append([]byte(fineMagic), make([]byte, 8)...)
	binary.LittleEndian.PutUint32(want[8:], uint32(blockSize))
	want[12] = byte(h)
	if n, _ := f.ReadAt(hdr, 0); n != fineHeader || string(hdr) != string(want) {
		if err := f.Truncate(0); err != nil {
			f.Close()
			return nil, err
		}
		if _, err := f.WriteAt(want, 0); err != nil {
			f.Close()
			return nil, err
		}
	}
	return c, nil
}

func (c *fineCache) close() error {
	c.flush()
	return c.f.Close()
}

func (c *fineCache) off(b uint64) int64 { return fineHeader + int64(b)*int64(c.esz) }

// get returns the fine sums of block b (appended to out[:0]) when the
// cache holds them for the content whose coarse sum is coarse.
func (c *fineCache) get(b uint64, coarse Sum, out []Sum) ([]Sum, bool) {
	if c.n > 0 && b >= c.first && b < c.first+uint64(c.n) {
		c.flush()
	}
	e := c.rbuf
	if n, _ := c.f.ReadAt(e, c.off(b)); n != len(e) {
		return nil, false
	}
	le := binary.LittleEndian
	cnt := int(le.Uint16(e[16:]))
	if Sum(e[:16]) != coarse || cnt == 0 || cnt > c.subs ||
		crc32.Checksum(e[:c.esz-4], crcTable) != le.Uint32(e[c.esz-4:]) {
		return nil, false
	}
	out = out[:0]
	for i := range cnt {
		out = append(out, Sum(e[18+16*i:18+16*i+16]))
	}
	return out, true
}

// put records the fine sums of the content of block b whose coarse sum
// is coarse. Entries of consecutive blocks are written together; a
// failed write only costs a device read later.
func (c *fineCache) put(b uint64, coarse Sum, fine []Sum) {
	if len(fine) == 0 || len(fine) > c.subs {
		return
	}
	if c.n > 0 && (b != c.first+uint64(c.n) || c.n == fineRun) {
		c.flush()
	}
	if c.run == nil {
		c.run = make([]byte, fineRun*c.esz)
	}
	if c.n == 0 {
		c.first = b
	}
	e := c.run[c.n*c.esz : (c.n+1)*c.esz]
	clear(e)
	copy(e, coarse[:])
	binary.LittleEndian.PutUint16(e[16:], uint16(len(fine)))
	for i, s := range fine {
		copy(e[18+16*i:], s[:])
	}
	binary.LittleEndian.PutUint32(e[c.esz-4:], crc32.Checksum(e[:c.esz-4], crcTable))
	c.n++
}

// flush writes the gathered entries.
func (c *fineCache) flush() {
	if c.n == 0 {
		return
	}
	_, _ = c.f.WriteAt(c.run[:c.n*c.esz], c.off(c.first))
	c.n = 0
}

// fineTrack follows a round's records for the fine-sum cache: a block
// written whole gets the fine sums of its record; a block the source
// sent in sub-blocks gets, with the source's sum of the block
// (blockSumMsg), the fine sums it had with the sent sub-blocks replaced.
type fineTrack struct {
	c    *fineCache
	h    HashKind
	zs   zeroSums
	sums []Sum // scratch
	// the sub-block records of the last block that had some
	cur  uint64
	subs []subSum
}

type subSum struct {
	sub int
	sum Sum
}

func newFineTrack(c *fineCache, h HashKind) *fineTrack {
	return &fineTrack{c: c, h: h, zs: zeroSums{h: h}}
}

// record notes a valid record of geometry g whose block's coarse sum
// after it is whole (when it rewrote the block whole).
func (t *fineTrack) record(g Geometry, d dataMsg, whole Sum) {
	_, n := g.Span(d.Block)
	if d.Sub == wholeBlock {
		t.subs = t.subs[:0]
		t.sums = t.sums[:0]
		if d.Zero {
			for off := 0; off < n; off += FineSize {
				t.sums = append(t.sums, t.zs.of(min(FineSize, n-off)))
			}
		} else {
			t.sums = appendFineSums(t.sums, t.h, d.Bytes)
		}
		t.c.put(d.Block, whole, t.sums)
		return
	}
	if len(t.subs) > 0 && t.cur != d.Block {
		t.subs = t.subs[:0]
	}
	t.cur = d.Block
	s := int(d.Sub)
	var sum Sum
	if d.Zero {
		sum = t.zs.of(min(FineSize, n-s*FineSize))
	} else {
		sum = t.h.Sum(d.Bytes)
	}
	t.subs = append(t.subs, subSum{s, sum})
}

// claim notes the source's sum of block b after its sub-block records;
// before is the block's coarse sum before the round.
func (t *fineTrack) claim(b uint64, sum, before Sum) {
	if len(t.subs) == 0 || t.cur != b {
		return
	}
	old, ok := t.c.get(b, before, t.sums)
	if !ok {
		return
	}
	t.sums = old
	for _, s := range t.subs {
		if s.sub >= len(t.sums) {
			return
		}
		t.sums[s.sub] = s.sum
	}
	t.subs = t.subs[:0]
	t.c.put(b, sum, t.sums)
}
