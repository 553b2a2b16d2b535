package sdcard

import "math/bits"

// Bitmap marks dirty blocks, one bit per block.
type Bitmap struct {
	n     uint64
	words []uint64
}

// NewBitmap returns a clean bitmap of n blocks.
func NewBitmap(n uint64) *Bitmap { return &Bitmap{n: n, words: make([]uint64, (n+63)/64)} }

// Len is the number of blocks.
func (b *Bitmap) Len() uint64 { return b.n }

// Set marks block i dirty.
func (b *Bitmap) Set(i uint64) {
	if i < b.n {
		b.words[i/64] |= 1 << (i % 64)
	}
}

// Unset marks block i clean.
func (b *Bitmap) Unset(i uint64) {
	if i < b.n {
		b.words[i/64] &^= 1 << (i % 64)
	}
}

// Get reports whether block i is dirty.
func (b *Bitmap) Get(i uint64) bool { return i < b.n && b.words[i/64]&(1<<(i%64)) != 0 }

// SetRange marks blocks [from, to) dirty.
func (b *Bitmap) SetRange(from, to uint64) {
	for i := from; i < to && i < b.n; i++ {
		b.Set(i)
	}
}

// Count is the number of dirty blocks.
func (b *Bitmap) Count() uint64 {
	var c int
	for _, w := range b.words {
		c += bits.OnesCount64(w)
	}
	return uint64(c)
}

// List returns the dirty blocks in ascending order.
func (b *Bitmap) List() []uint64 {
	var out []uint64
	for wi, w := range b.words {
		for w != 0 {
			t := bits.TrailingZeros64(w)
			out = append(out, uint64(wi*64+t))
			w &= w - 1
		}
	}
	return out
}

// Or marks every block dirty in o dirty in b too. Both have the same length.
func (b *Bitmap) Or(o *Bitmap) {
	for i := range b.words {
		if i < len(o.words) {
			b.words[i] |= o.words[i]
		}
	}
}

// Clone returns a copy.
func (b *Bitmap) Clone() *Bitmap {
	return &Bitmap{n: b.n, words: append([]uint64(nil), b.words...)}
}

// Clear marks every block clean.
func (b *Bitmap) Clear() { clear(b.words) }
