// Package hmackey is the keyed authenticator that the failover-line frames
// and the arbiter's datagrams share: HMAC-SHA256 over a message whose last
// bytes hold the (possibly truncated) tag. The two use different keys on
// purpose (the arbiter's is derived, so it cannot forge heartbeats); only
// the mechanism is shared.
package hmackey

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"sync"
)

// MAC is a secret prepared for sealing and verifying messages. It is safe
// for concurrent use (a mutex serialises the one HMAC state) and allocates
// nothing per message.
type MAC struct {
	mu  sync.Mutex
	mac hash.Hash
	sum [sha256.Size]byte
}

// New prepares secret.
func New(secret []byte) *MAC { return NewHash(hmac.New(sha256.New, secret)) }

// NewHash wraps an HMAC-SHA256 state made by the caller (tests wrap one to
// count the bytes it hashes).
func NewHash(h hash.Hash) *MAC { return &MAC{mac: h} }

// Seal writes the authenticator of b[:len(b)-tagLen] into the last tagLen
// bytes of b (tagLen at most sha256.Size).
func (m *MAC) Seal(b []byte, tagLen int) {
	n := len(b) - tagLen
	m.mu.Lock()
	m.mac.Reset()
	m.mac.Write(b[:n])
	copy(b[n:], m.mac.Sum(m.sum[:0]))
	m.mu.Unlock()
}

// Verify reports whether the last tagLen bytes of b authenticate the rest,
// in constant time.
func (m *MAC) Verify(b []byte, tagLen int) bool {
	n := len(b) - tagLen
	m.mu.Lock()
	m.mac.Reset()
	m.mac.Write(b[:n])
	ok := hmac.Equal(m.mac.Sum(m.sum[:0])[:tagLen], b[n:])
	m.mu.Unlock()
	return ok
}

// PairID returns the first four bytes, big-endian, of
// SHA-256(label || 0 || secret): the pair id a key names on the wire.
func PairID(label string, secret []byte) uint32 {
	h := sha256.New()
	h.Write([]byte(label))
	h.Write([]byte{0})
	h.Write(secret)
	var sum [sha256.Size]byte
	return binary.BigEndian.Uint32(h.Sum(sum[:0]))
}
