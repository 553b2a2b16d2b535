package pairing

import (
	"crypto/ed25519"
	"fmt"

	"github.com/pairguard/pairguard/firmware/pairing/cpace"
)

// Limits on what a node says about itself.
const (
	MaxNameLen     = 64
	MaxSoftwareLen = 64
)

// Peer is what a node learns about the other during the exchange; all of it
// is covered by the key confirmation.
type Peer struct {
	NodeID   uint64
	Name     string
	Software string
	Key      ed25519.PublicKey // the peer's identity key, pinned once paired
}

// encodeAD builds a CPace associated-data field:
// lv(name) lv(software) lv(ed25519 key) lv(settings).
func encodeAD(name, software string, key ed25519.PublicKey, settings []byte) []byte {
	return cpace.PrefixFreeCat([]byte(name), []byte(software), key, settings)
}

// decodeAD parses an associated-data field; the strings are copied.
func decodeAD(ad []byte) (name, software string, key ed25519.PublicKey, settings []byte, err error) {
	parts, err := cpace.SplitPrefixFree(ad, 4)
	if err != nil {
		return "", "", nil, nil, fmt.Errorf("%w: associated data", ErrMalformed)
	}
	switch {
	case len(parts[0]) == 0 || len(parts[0]) > MaxNameLen:
		return "", "", nil, nil, fmt.Errorf("%w: node name of %d bytes", ErrMalformed, len(parts[0]))
	case len(parts[1]) > MaxSoftwareLen:
		return "", "", nil, nil, fmt.Errorf("%w: software version of %d bytes", ErrMalformed, len(parts[1]))
	case len(parts[2]) != ed25519.PublicKeySize:
		return "", "", nil, nil, fmt.Errorf("%w: identity key of %d bytes", ErrMalformed, len(parts[2]))
	}
	return string(parts[0]), string(parts[1]), ed25519.PublicKey(append([]byte(nil), parts[2]...)),
		append([]byte(nil), parts[3]...), nil
}
