package sdcard

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"testing/quick"
)

// applyPieces is the naive target: it writes each planned record.
func applyPieces(t, p []byte, pieces []Piece) {
	for _, pc := range pieces {
		lo, hi := 0, len(p)
		if pc.Sub != wholeBlock {
			lo, hi = int(pc.Sub)*FineSize, min((int(pc.Sub)+1)*FineSize, len(p))
		}
		if pc.Zero {
			clear(t[lo:hi])
		} else {
			copy(t[lo:hi], p[lo:hi])
		}
	}
}

// planOnto runs the planner the way a round does for a source block p and
// a target block t, and returns what the target holds afterwards and the
// bytes sent.
func planOnto(p, t []byte) ([]byte, int) {
	out := bytes.Clone(t)
	pieces, fine := PlanBlock(p, IsZero(t))
	if fine {
		pieces = PlanSubs(HashXXH3, p, FineSums(HashXXH3, t))
	}
	applyPieces(out, p, pieces)
	sent := 0
	for _, pc := range pieces {
		switch {
		case pc.Zero:
		case pc.Sub == wholeBlock:
			sent += len(p)
		default:
			sent += min(FineSize, len(p)-int(pc.Sub)*FineSize)
		}
	}
	return out, sent
}

// blockPair builds a source and a target block from a seed: sub-blocks
// that are zero, equal on both sides, or different, and a short last block
// now and then.
func blockPair(seed uint64) ([]byte, []byte) {
	r := rand.New(rand.NewPCG(seed, 3))
	n := (1 + r.IntN(16)) * FineSize
	if r.IntN(4) == 0 {
		n -= Sector * r.IntN(FineSize/Sector)
	}
	p, t := make([]byte, n), make([]byte, n)
	for lo := 0; lo < n; lo += FineSize {
		hi := min(lo+FineSize, n)
		switch r.IntN(5) {
		case 0: // zero on the source
		case 1: // zero on the target only
			fill(r, p[lo:hi])
		case 2: // equal
			fill(r, p[lo:hi])
			copy(t[lo:hi], p[lo:hi])
		default:
			fill(r, p[lo:hi])
			fill(r, t[lo:hi])
		}
	}
	switch r.IntN(6) {
	case 0:
		clear(t) // a target that never held data there
	case 1:
		clear(p)
	}
	return p, t
}

func fill(r *rand.Rand, b []byte) {
	for i := range b {
		b[i] = byte(r.Uint32())
	}
}

// The planner against the naive model (send the whole block): the target
// ends with the source's bytes, and never more data goes than naively.
func TestPlanBlockQuick(t *testing.T) {
	f := func(seed uint64) bool {
		p, tg := blockPair(seed)
		got, sent := planOnto(p, tg)
		if !bytes.Equal(got, p) {
			t.Logf("seed %d: target differs from the source after the plan", seed)
			return false
		}
		if sent > len(p) {
			t.Logf("seed %d: %d bytes sent for a block of %d", seed, sent, len(p))
			return false
		}
		return true
	}
	if err := quick.Check(f, &quick.Config{MaxCount: 2000}); err != nil {
		t.Fatal(err)
	}
}

// Sub-blocks the target already holds are never sent as data.
func TestPlanSubsSkipsEqual(t *testing.T) {
	f := func(seed uint64) bool {
		p, tg := blockPair(seed)
		for _, pc := range PlanSubs(HashXXH3, p, FineSums(HashXXH3, tg)) {
			subs := []int{int(pc.Sub)}
			if pc.Sub == wholeBlock { // every sub-block differs
				subs = subs[:0]
				for s := 0; s*FineSize < len(p); s++ {
					subs = append(subs, s)
				}
			}
			for _, s := range subs {
				lo, hi := s*FineSize, min((s+1)*FineSize, len(p))
				if bytes.Equal(p[lo:hi], tg[lo:hi]) {
					return false
				}
			}
		}
		return true
	}
	if err := quick.Check(f, &quick.Config{MaxCount: 1000}); err != nil {
		t.Fatal(err)
	}
}

// A full round's plan turns any target block into the source's, and sends
// no more data than the block.
func TestPlanStreamQuick(t *testing.T) {
	f := func(seed uint64) bool {
		p, tg := blockPair(seed)
		pieces := PlanStream(p)
		out := bytes.Clone(tg)
		applyPieces(out, p, pieces)
		sent := 0
		for _, pc := range pieces {
			switch {
			case pc.Zero:
			case pc.Sub == wholeBlock:
				sent += len(p)
			default:
				sent += min(FineSize, len(p)-int(pc.Sub)*FineSize)
			}
		}
		if !bytes.Equal(out, p) || sent > len(p) {
			t.Logf("seed %d: target differs or %d bytes sent for %d", seed, sent, len(p))
			return false
		}
		return true
	}
	if err := quick.Check(f, &quick.Config{MaxCount: 2000}); err != nil {
		t.Fatal(err)
	}
}

func FuzzPlanBlock(f *testing.F) {
	f.Add(uint64(0), []byte{})
	f.Add(uint64(7), []byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, seed uint64, patch []byte) {
		p, tg := blockPair(seed)
		copy(p, patch) // arbitrary bytes at the start of the source block
		if got, _ := planOnto(p, tg); !bytes.Equal(got, p) {
			t.Fatal("target differs from the source after the plan")
		}
	})
}

// PlanRound against a naive statement of its rules.
func TestPlanRoundQuick(t *testing.T) {
	f := func(online, valid, compare bool, lc, pc, synced, data uint8) bool {
		local := GenInfo{Current: uint64(lc % 3)}
		peer := GenInfo{Current: uint64(pc % 3), Data: DataState(1 + data%3)}
		got := PlanRound(online, valid, compare, local, peer, uint64(synced%3))
		var want RoundPlan
		if peer.Current == 0 && peer.Data == DataInconsistent {
			want = RoundPlan{Mode: RoundBitmap, Full: true}
		} else if online && valid && !compare && peer.Current == uint64(synced%3) && peer.Current != 0 &&
			peer.Current == local.Current && peer.Data == DataUpToDate {
			want = RoundPlan{Mode: RoundBitmap}
		} else {
			want = RoundPlan{Mode: RoundChecksum}
		}
		return got == want
	}
	if err := quick.Check(f, nil); err != nil {
		t.Fatal(err)
	}
}
