package online

import "math/bits"

// BlockSize is the granularity of the dirty bitmap: one bit per 4 KiB.
const BlockSize = 4096

// ExtentSize is the granularity of the activity log: 4 MiB, 1024 blocks.
const ExtentSize = 4 << 20

const blocksPerExtent = ExtentSize / BlockSize

// dirtyMap is the dirty bitmap: bit i set when block i may differ on the
// peer. Not safe for concurrent use; the Primary's lock guards it.
type dirtyMap struct {
	n     uint64
	words []uint64
	count uint64
}

func newDirtyMap(n uint64) *dirtyMap { return &dirtyMap{n: n, words: make([]uint64, (n+63)/64)} }

// blockRange returns the blocks [from, to) touched by the byte range.
func blockRange(off, length int64) (from, to uint64) {
	return uint64(off / BlockSize), uint64((off + length + BlockSize - 1) / BlockSize)
}

func (d *dirtyMap) set(i uint64) {
	if i >= d.n {
		return
	}
	w, m := i/64, uint64(1)<<(i%64)
	if d.words[w]&m == 0 {
		d.words[w] |= m
		d.count++
	}
}

func (d *dirtyMap) setRange(from, to uint64) {
	for i := from; i < to && i < d.n; i++ {
		d.set(i)
	}
}

func (d *dirtyMap) clear(i uint64) {
	if i >= d.n {
		return
	}
	w, m := i/64, uint64(1)<<(i%64)
	if d.words[w]&m != 0 {
		d.words[w] &^= m
		d.count--
	}
}

func (d *dirtyMap) get(i uint64) bool { return i < d.n && d.words[i/64]&(1<<(i%64)) != 0 }

// next returns the first dirty block at or after i, or n.
func (d *dirtyMap) next(i uint64) uint64 {
	for i < d.n {
		w := d.words[i/64] >> (i % 64)
		if w != 0 {
			return min(i+uint64(bits.TrailingZeros64(w)), d.n)
		}
		i = (i/64 + 1) * 64
	}
	return d.n
}

// extentBytes returns the bitmap bytes of extent e (128 bytes, little
// endian bit order, as in the bitmap file).
func (d *dirtyMap) extentBytes(e uint32, out []byte) {
	w0 := uint64(e) * blocksPerExtent / 64
	for k := range blocksPerExtent / 64 {
		var w uint64
		if w0+uint64(k) < uint64(len(d.words)) {
			w = d.words[w0+uint64(k)]
		}
		for j := range 8 {
			out[k*8+j] = byte(w >> (8 * j))
		}
	}
}

// orBytes marks dirty every bit set in b, a slice of the bitmap file
// starting at byte off.
func (d *dirtyMap) orBytes(b []byte, off int) {
	for j, c := range b {
		for c != 0 {
			t := bits.TrailingZeros8(c)
			d.set(uint64(off+j)*8 + uint64(t))
			c &= c - 1
		}
	}
}
