package frame

import (
	"slices"
	"sync"
)

// WindowSize is the number of sequence numbers below the highest one seen
// that Replay still accepts once, so that frames of the two paths (LAN 1
// and LAN 2) may arrive out of order.
const WindowSize = 64

// Replay rejects replayed frames. For each peer node id it tracks the
// highest boot id seen and, for that boot, a sliding window of the last
// WindowSize sequence numbers (RFC 4303, section 3.4.3, as in IPsec).
//
// Check only authenticated frames: the state moves forward with every
// accepted frame. The zero value is ready to use; Replay is safe for
// concurrent use.
type Replay struct {
	mu    sync.Mutex
	peers map[uint64]*window
}

// window is the replay state of one peer.
type window struct {
	boot uint64 // highest boot id seen
	top  uint64 // highest sequence number seen in boot
	bits uint64 // bit i set: top-i was seen
}

// NewReplay returns an empty Replay.
func NewReplay() *Replay { return &Replay{} }

// Check records the frame (nodeID, bootID, seq) and returns nil if it is
// new, or ErrReplay if it repeats a frame already accepted, is older than
// the window, or comes from an older boot of the peer.
func (r *Replay) Check(nodeID, bootID, seq uint64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	w := r.peers[nodeID]
	if w == nil {
		if r.peers == nil {
			r.peers = make(map[uint64]*window)
		}
		r.peers[nodeID] = &window{boot: bootID, top: seq, bits: 1}
		return nil
	}
	switch {
	case bootID < w.boot:
		return ErrReplay
	case bootID > w.boot:
		*w = window{boot: bootID, top: seq, bits: 1}
		return nil
	}
	if seq > w.top {
		if d := seq - w.top; d < WindowSize {
			w.bits = w.bits<<d | 1
		} else {
			w.bits = 1
		}
		w.top = seq
		return nil
	}
	d := w.top - seq
	if d >= WindowSize || w.bits&(1<<d) != 0 {
		return ErrReplay
	}
	w.bits |= 1 << d
	return nil
}

// Mark is the persistent replay state of one peer: frames of boot BootID
// with a sequence number up to Seq, and frames of older boots, are refused.
type Mark struct {
	NodeID uint64 `json:"node-id"`
	BootID uint64 `json:"boot-id"`
	Seq    uint64 `json:"seq"`
}

// Snapshot returns the state to persist, one Mark per peer, sorted by node
// id. The daemon stores it so that, after its own restart, frames recorded
// from an older boot of the peer are still refused.
func (r *Replay) Snapshot() []Mark {
	r.mu.Lock()
	defer r.mu.Unlock()
	marks := make([]Mark, 0, len(r.peers))
	for id, w := range r.peers {
		marks = append(marks, Mark{NodeID: id, BootID: w.boot, Seq: w.top})
	}
	slices.SortFunc(marks, func(a, b Mark) int {
		switch {
		case a.NodeID < b.NodeID:
			return -1
		case a.NodeID > b.NodeID:
			return 1
		}
		return 0
	})
	return marks
}

// Restore replaces the state with marks from Snapshot: for each peer, every
// sequence number up to Mark.Seq of boot Mark.BootID counts as seen.
func (r *Replay) Restore(marks []Mark) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.peers = make(map[uint64]*window, len(marks))
	for _, m := range marks {
		r.peers[m.NodeID] = &window{boot: m.BootID, top: m.Seq, bits: ^uint64(0)}
	}
}
