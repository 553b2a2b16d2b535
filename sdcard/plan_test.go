package sdcard

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"testing"
	"testing/quick"
)

// TestBitmapQuick compares the bitmap with a map of dirty blocks.
func TestBitmapQuick(t *testing.T) {
	f := func(n uint16, ops []uint32) bool {
		b := NewBitmap(uint64(n))
		model := map[uint64]bool{}
		for _, op := range ops {
			i := uint64(op>>1) % (uint64(n) + 10)
			if op&1 == 0 {
				b.Set(i)
				if i < uint64(n) {
					model[i] = true
				}
			}
			if b.Get(i) != model[i] {
				return false
			}
		}
		var want []uint64
		for i := range model {
			want = append(want, i)
		}
		slices.Sort(want)
		c := b.Clone()
		b.Clear()
		b.Or(c)
		return slices.Equal(b.List(), want) && b.Count() == uint64(len(want))
	}
	if err := quick.Check(f, nil); err != nil {
		t.Fatal(err)
	}
}

// TestDiffFineQuick checks the planner against a naive byte comparison:
// applying the sub-blocks it names makes the remote block equal.
func TestDiffFineQuick(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for iter := range 200 {
		n := (1 + r.IntN(16)) * FineSize
		if iter%5 == 0 {
			n -= 512 * r.IntN(7) // a short last block
		}
		src := make([]byte, n)
		for i := range src {
			src[i] = byte(r.Uint32())
		}
		dst := slices.Clone(src)
		for range r.IntN(5) {
			dst[r.IntN(n)] ^= byte(1 + r.IntN(255))
		}
		for _, h := range []HashKind{HashXXH3, HashBLAKE3} {
			subs := DiffFine(h, src, FineSums(h, dst))
			got := slices.Clone(dst)
			for _, s := range subs {
				copy(got[s*FineSize:], src[s*FineSize:min((s+1)*FineSize, n)])
			}
			if !bytes.Equal(got, src) {
				t.Fatalf("%v: applying %v does not give the source", h, subs)
			}
			for s := range (n + FineSize - 1) / FineSize {
				a, b := src[s*FineSize:min((s+1)*FineSize, n)], dst[s*FineSize:min((s+1)*FineSize, n)]
				if bytes.Equal(a, b) == slices.Contains(subs, s) {
					t.Fatalf("%v: sub-block %d equal=%v but listed=%v", h, s, bytes.Equal(a, b), slices.Contains(subs, s))
				}
			}
		}
	}
}

func TestDiffCoarse(t *testing.T) {
	a := []Sum{{1}, {2}, {3}, {4}}
	b := []Sum{{1}, {9}, {3}, {8}, {5}}
	if got := DiffCoarse(10, a, b); !slices.Equal(got, []uint64{11, 13}) {
		t.Fatalf("DiffCoarse = %v", got)
	}
}

func TestIsZero(t *testing.T) {
	b := make([]byte, 3<<20)
	if !IsZero(b) {
		t.Fatal("zero not zero")
	}
	b[len(b)-1] = 1
	if IsZero(b) {
		t.Fatal("non-zero is zero")
	}
}
