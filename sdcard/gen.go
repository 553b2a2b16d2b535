package sdcard

import (
	"fmt"
	"slices"
)

// MaxHistory is how many earlier generation identifiers a node keeps.
const MaxHistory = 8

// GenInfo is what a node says of its data: its current generation
// identifier, the earlier ones (newest first) and the data state. A
// current identifier of 0 means the node never held data of the pair.
type GenInfo struct {
	Current uint64
	History []uint64
	Data    DataState
}

// String formats g for logs.
func (g GenInfo) String() string {
	return fmt.Sprintf("%016x%x/%v", g.Current, g.History, g.Data)
}

// Direction is the result of comparing two nodes' generations.
type Direction uint8

const (
	directionInvalid Direction = iota
	// DirNone: the same generation, nothing to do from history.
	DirNone
	// DirFromLocal: the local node is newer and sends.
	DirFromLocal
	// DirFromRemote: the peer is newer; the local node receives.
	DirFromRemote
	// DirSplitBrain: the generations diverged; an operator or a policy
	// must name the side to keep.
	DirSplitBrain
)

var directionNames = [...]string{"invalid", "none", "from-local", "from-remote", "split-brain"}

func (d Direction) String() string {
	if int(d) < len(directionNames) {
		return directionNames[d]
	}
	return fmt.Sprintf("invalid(%d)", uint8(d))
}

// Decide says which way data must flow between local and remote, as DRBD
// decides from its UUIDs. It is pure.
func Decide(local, remote GenInfo) Direction {
	switch {
	case local.Current == 0 && remote.Current == 0:
		return DirNone
	case local.Current == 0:
		return DirFromRemote
	case remote.Current == 0:
		return DirFromLocal
	case local.Current == remote.Current:
		li := local.Data == DataInconsistent
		ri := remote.Data == DataInconsistent
		switch {
		case li && !ri:
			return DirFromRemote
		case ri && !li:
			return DirFromLocal
		}
		return DirNone
	case slices.Contains(remote.History, local.Current):
		return DirFromRemote
	case slices.Contains(local.History, remote.Current):
		return DirFromLocal
	}
	return DirSplitBrain
}

// SplitBrainPolicy says what happens when Decide finds a split brain.
type SplitBrainPolicy uint8

const (
	splitBrainInvalid SplitBrainPolicy = iota
	// SplitBrainManual reports and waits for an operator's Resolve.
	SplitBrainManual
	// SplitBrainDiscardZeroChanges resolves a split brain by itself only
	// toward the side that changed: a secondary whose device still
	// matches the block sums of the last completed round (it provably
	// changed nothing since the generations diverged) discards its
	// generation and receives the peer's data. When both changed, or the
	// unchanged side is the primary, it waits for an operator as manual does.
	SplitBrainDiscardZeroChanges
)

var splitBrainNames = [...]string{"invalid", "manual", "discard-zero-changes"}

func (p SplitBrainPolicy) String() string {
	if int(p) < len(splitBrainNames) {
		return splitBrainNames[p]
	}
	return fmt.Sprintf("invalid(%d)", uint8(p))
}

// ParseSplitBrainPolicy returns the policy for a config value.
func ParseSplitBrainPolicy(s string) (SplitBrainPolicy, error) {
	for i, n := range splitBrainNames {
		if i > 0 && n == s {
			return SplitBrainPolicy(i), nil
		}
	}
	return 0, fmt.Errorf("sdcard: split-brain: unknown value %q (want manual or discard-zero-changes)", s)
}

// Digest is the sum of a device's block sums: two devices with the same
// digest hold the same data (to the strength of the hash).
func Digest(h HashKind, sums []Sum) Sum {
	b := make([]byte, 0, len(sums)*len(Sum{}))
	for _, s := range sums {
		b = append(b, s[:]...)
	}
	return h.Sum(b)
}
