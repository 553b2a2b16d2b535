package frame

import (
	"errors"
	"sync/atomic"
)

// Counters count frames by outcome. The fields are atomic: the receive
// loop records while the daemon reads them for status. The zero value is
// ready to use.
type Counters struct {
	Received  atomic.Uint64 // frames handed to Record
	Accepted  atomic.Uint64 // decoded, authenticated and new
	Short     atomic.Uint64 // ErrShort
	Magic     atomic.Uint64 // ErrMagic: not ours
	Version   atomic.Uint64 // ErrVersion: authenticated, other protocol
	Forged    atomic.Uint64 // ErrAuth
	Foreign   atomic.Uint64 // ErrPair
	Malformed atomic.Uint64 // ErrMalformed
	Replayed  atomic.Uint64 // ErrReplay
	Other     atomic.Uint64 // any other error
	// Stale and Reflected are decided after Record accepted a frame, by
	// the role engine: counted by the caller.
	Stale     atomic.Uint64 // authenticated and new, but not proven sent since this node started
	Reflected atomic.Uint64 // this node's own frame sent back to it
	Sent      atomic.Uint64 // frames sent, counted by the caller
}

// Record counts one received frame with the error of Decode, or of
// Replay.Check when Decode succeeded.
func (c *Counters) Record(err error) {
	c.Received.Add(1)
	switch {
	case err == nil:
		c.Accepted.Add(1)
	case errors.Is(err, ErrShort):
		c.Short.Add(1)
	case errors.Is(err, ErrMagic):
		c.Magic.Add(1)
	case errors.Is(err, ErrVersion):
		c.Version.Add(1)
	case errors.Is(err, ErrAuth):
		c.Forged.Add(1)
	case errors.Is(err, ErrPair):
		c.Foreign.Add(1)
	case errors.Is(err, ErrMalformed):
		c.Malformed.Add(1)
	case errors.Is(err, ErrReplay):
		c.Replayed.Add(1)
	default:
		c.Other.Add(1)
	}
}

// CounterValues is a copy of Counters, for status output.
type CounterValues struct {
	Received  uint64 `json:"received"`
	Accepted  uint64 `json:"accepted"`
	Short     uint64 `json:"short"`
	Magic     uint64 `json:"magic"`
	Version   uint64 `json:"version"`
	Forged    uint64 `json:"forged"`
	Foreign   uint64 `json:"foreign"`
	Malformed uint64 `json:"malformed"`
	Replayed  uint64 `json:"replayed"`
	Other     uint64 `json:"other"`
	Stale     uint64 `json:"stale"`
	Reflected uint64 `json:"reflected"`
	Sent      uint64 `json:"sent"`
}

// Load returns the current values. Each field is read atomically; the set
// is not a single snapshot.
func (c *Counters) Load() CounterValues {
	return CounterValues{
		Received:  c.Received.Load(),
		Accepted:  c.Accepted.Load(),
		Short:     c.Short.Load(),
		Magic:     c.Magic.Load(),
		Version:   c.Version.Load(),
		Forged:    c.Forged.Load(),
		Foreign:   c.Foreign.Load(),
		Malformed: c.Malformed.Load(),
		Replayed:  c.Replayed.Load(),
		Other:     c.Other.Load(),
		Stale:     c.Stale.Load(),
		Reflected: c.Reflected.Load(),
		Sent:      c.Sent.Load(),
	}
}
