package pairing

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
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

// revealLen is the length of the main's check-number nonce R, committed
// to in its AD as SHA-256(R) and revealed in the finish.
const revealLen = 32

// adFields are the contents of a CPace associated-data field.
type adFields struct {
	name, software string
	key            ed25519.PublicKey
	settings       []byte // main: its encoded settings; spare: empty
	commit         []byte // main: SHA-256 of its check-number nonce; spare: empty
}

// encodeAD builds an associated-data field:
// lv(name) lv(software) lv(ed25519 key) lv(settings) lv(commitment).
func encodeAD(a adFields) []byte {
	return cpace.PrefixFreeCat([]byte(a.name), []byte(a.software), a.key, a.settings, a.commit)
}

// decodeAD parses an associated-data field; everything is copied.
func decodeAD(ad []byte) (adFields, error) {
	parts, err := cpace.SplitPrefixFree(ad, 5)
	if err != nil {
		return adFields{}, fmt.Errorf("%w: associated data", ErrMalformed)
	}
	switch {
	case len(parts[0]) == 0 || len(parts[0]) > MaxNameLen:
		return adFields{}, fmt.Errorf("%w: node name of %d bytes", ErrMalformed, len(parts[0]))
	case len(parts[1]) > MaxSoftwareLen:
		return adFields{}, fmt.Errorf("%w: software version of %d bytes", ErrMalformed, len(parts[1]))
	case len(parts[2]) != ed25519.PublicKeySize:
		return adFields{}, fmt.Errorf("%w: identity key of %d bytes", ErrMalformed, len(parts[2]))
	case len(parts[4]) != 0 && len(parts[4]) != sha256.Size:
		return adFields{}, fmt.Errorf("%w: commitment of %d bytes", ErrMalformed, len(parts[4]))
	}
	return adFields{
		name:     string(parts[0]),
		software: string(parts[1]),
		key:      ed25519.PublicKey(bytes.Clone(parts[2])),
		settings: bytes.Clone(parts[3]),
		commit:   bytes.Clone(parts[4]),
	}, nil
}
