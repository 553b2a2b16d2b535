package sdcard

// DiffCoarse returns the indices, offset by first, of the blocks whose
// local and remote sums differ. Extra entries in either slice are ignored.
func DiffCoarse(first uint64, local, remote []Sum) []uint64 {
	var out []uint64
	for i := range min(len(local), len(remote)) {
		if local[i] != remote[i] {
			out = append(out, first+uint64(i))
		}
	}
	return out
}

// FineSums hashes each FineSize sub-block of block (the last may be short).
func FineSums(h HashKind, block []byte) []Sum {
	return appendFineSums(make([]Sum, 0, (len(block)+FineSize-1)/FineSize), h, block)
}

// appendFineSums appends the fine sums of block to out.
func appendFineSums(out []Sum, h HashKind, block []byte) []Sum {
	for off := 0; off < len(block); off += FineSize {
		out = append(out, h.Sum(block[off:min(off+FineSize, len(block))]))
	}
	return out
}

// DiffFine returns the sub-blocks of block whose sums differ from remote.
// A remote list of another length (a different block size) marks every
// sub-block.
func DiffFine(h HashKind, block []byte, remote []Sum) []int {
	n := (len(block) + FineSize - 1) / FineSize
	var out []int
	for s := range n {
		sub := block[s*FineSize : min((s+1)*FineSize, len(block))]
		if len(remote) != n || h.Sum(sub) != remote[s] {
			out = append(out, s)
		}
	}
	return out
}

// RoundPlan is how a round finds the blocks to send.
type RoundPlan struct {
	Mode RoundMode
	// Full: the target never held data; every block is streamed whole
	// ([PlanStream]) without a sum scan and without fine sums.
	Full bool
}

// PlanRound chooses a round's mode from what the source knows. A target
// that never held data (no generation, inconsistent) gets every block; a
// target without a generation that holds consistent data (it discarded its
// generation to end a split brain) is compared by sums like any other; a
// bitmap round needs online mode, a valid bitmap, and a peer that still
// holds exactly the generation the bitmap was started against; compare
// (an operator's `pairguard sync`) always scans sums. It is pure.
func PlanRound(online, bitmapValid, compare bool, local, peer GenInfo, syncedGen uint64) RoundPlan {
	switch {
	case peer.Current == 0 && peer.Data == DataInconsistent:
		return RoundPlan{Mode: RoundBitmap, Full: true}
	case !compare && online && bitmapValid && peer.Current == syncedGen && peer.Current != 0 &&
		peer.Current == local.Current && peer.Data == DataUpToDate:
		return RoundPlan{Mode: RoundBitmap}
	}
	return RoundPlan{Mode: RoundChecksum}
}

// Piece is one record the source sends for a block: a sub-block (or the
// whole block, Sub == wholeBlock) as data or as a zero marker.
type Piece struct {
	Sub  uint16
	Zero bool
}

// PlanStream says what to send for a block of a full round, whose target
// holds nothing worth comparing: a zero block is one zero marker, a block
// without zero sub-blocks one whole record, any other block its sub-blocks,
// the zero ones as markers. It is pure.
func PlanStream(p []byte) []Piece {
	if IsZero(p) {
		return []Piece{{Sub: wholeBlock, Zero: true}}
	}
	var out []Piece
	whole := true
	for s := 0; s*FineSize < len(p); s++ {
		z := IsZero(p[s*FineSize : min((s+1)*FineSize, len(p))])
		whole = whole && !z
		out = append(out, Piece{Sub: uint16(s), Zero: z})
	}
	if whole {
		return []Piece{{Sub: wholeBlock}}
	}
	return out
}

// PlanBlock says what to send for a block whose coarse sum differs and
// whose target is known to hold zeros (targetZero), before any fine sums:
// a zero block is one zero marker; onto zeros the block goes at once,
// whole when no sub-block is zero, else its non-zero sub-blocks.
// Otherwise fine is true and the fine sums of the target decide
// (PlanSubs). It is pure.
func PlanBlock(p []byte, targetZero bool) (pieces []Piece, fine bool) {
	if !targetZero {
		return nil, true
	}
	if IsZero(p) {
		return []Piece{{Sub: wholeBlock, Zero: true}}, false
	}
	var subs []Piece
	whole := true
	for s := 0; s*FineSize < len(p); s++ {
		if IsZero(p[s*FineSize : min((s+1)*FineSize, len(p))]) {
			whole = false
			continue
		}
		subs = append(subs, Piece{Sub: uint16(s)})
	}
	if whole {
		return []Piece{{Sub: wholeBlock}}, false
	}
	return subs, false
}

// PlanSubs says which sub-blocks of p to send given the target's fine
// sums: those that differ, zero ones as markers. When every sub-block
// differs and all are zero or none is, it is one whole-block record. It
// is pure.
func PlanSubs(h HashKind, p []byte, remote []Sum) []Piece {
	var out []Piece
	zeros := 0
	for _, s := range DiffFine(h, p, remote) {
		sub := p[s*FineSize : min((s+1)*FineSize, len(p))]
		z := IsZero(sub)
		if z {
			zeros++
		}
		out = append(out, Piece{Sub: uint16(s), Zero: z})
	}
	if n := (len(p) + FineSize - 1) / FineSize; len(out) == n && n > 1 && (zeros == 0 || zeros == n) {
		return []Piece{{Sub: wholeBlock, Zero: zeros == n}}
	}
	return out
}
