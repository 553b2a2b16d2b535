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
	out := make([]Sum, 0, (len(block)+FineSize-1)/FineSize)
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
