package frame

import (
	"encoding/binary"
	"fmt"
)

// Pairing frames carry the messages of the teach-in (package
// firmware/pairing) between two units that share no key yet. They are a
// frame kind of their own, beside the heartbeat: the same EtherType and
// magic, but a variable-length payload and NO authenticator. An unpaired
// node has no pair key; the pairing messages authenticate themselves
// (a password-authenticated key exchange and session tags), so the frame
// only delimits them.
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|     magic 'P' 'G' (2)         | pair version  | type PAIR-HELLO|  0
//	+-------------------------------+---------------+---------------+
//	| length (2), header included   |        reserved, zero (2)     |  4
//	+-------------------------------+-------------------------------+
//	|                      reserved, zero (4)                       |  8
//	+---------------------------------------------------------------+
//	|          payload: one pairing message, 1..PairMaxPayload      | 12
//	|                              ...                              |
//	+---------------------------------------------------------------+
//
// The version byte is PairVersion and the type byte TypePairHello: a
// receiver tells the two kinds apart by IsPairFrame before it decodes
// anything. Bytes 8..11, where a heartbeat carries its pair id, are zero,
// so a heartbeat socket filter on a pair id does not pass pairing frames
// (unless the pair id is zero, once in 2^32 keys: Decode then rejects the
// frame by its length). Bytes after the length are Ethernet padding.

// Sizes of a pairing frame.
const (
	// PairVersion is the version byte of pairing frames.
	PairVersion uint8 = 1
	// PairHeaderLen is the length of the pairing frame header.
	PairHeaderLen = 12
	// PairMaxPayload bounds the payload (a pairing message).
	PairMaxPayload = 1400
	// PairMaxLen is the longest pairing frame.
	PairMaxLen = PairHeaderLen + PairMaxPayload
)

// IsPairFrame reports whether b starts like a pairing frame: the magic,
// PairVersion and TypePairHello. It reads nothing else.
func IsPairFrame(b []byte) bool {
	return len(b) >= PairHeaderLen && b[0] == magic[0] && b[1] == magic[1] &&
		b[offVersion] == PairVersion && b[offType] == byte(TypePairHello)
}

// AppendPair appends a pairing frame carrying payload to dst.
func AppendPair(dst, payload []byte) ([]byte, error) {
	if len(payload) == 0 || len(payload) > PairMaxPayload {
		return dst, fmt.Errorf("%w: pairing payload of %d bytes, want 1 to %d", ErrInvalid, len(payload), PairMaxPayload)
	}
	dst = append(dst, magic[0], magic[1], PairVersion, byte(TypePairHello))
	dst = binary.BigEndian.AppendUint16(dst, uint16(PairHeaderLen+len(payload)))
	dst = append(dst, 0, 0, 0, 0, 0, 0)
	return append(dst, payload...), nil
}

// DecodePair checks a pairing frame and returns its payload, a subslice
// of b (no allocation; copy it to keep it). It checks, before reading the
// payload: the header is there (ErrShort), the magic (ErrMagic), the
// version and type (ErrMalformed), the length field within
// PairHeaderLen+1..PairMaxLen (ErrMalformed) and within b (ErrShort), and
// the reserved bytes zero (ErrMalformed). Trailing padding is ignored.
func DecodePair(b []byte) ([]byte, error) {
	if len(b) < PairHeaderLen {
		return nil, fmt.Errorf("%w: %d bytes", ErrShort, len(b))
	}
	if b[0] != magic[0] || b[1] != magic[1] {
		return nil, ErrMagic
	}
	if b[offVersion] != PairVersion || b[offType] != byte(TypePairHello) {
		return nil, fmt.Errorf("%w: version %d type %d is not a pairing frame", ErrMalformed, b[offVersion], b[offType])
	}
	n := int(binary.BigEndian.Uint16(b[offLength:]))
	if n <= PairHeaderLen || n > PairMaxLen {
		return nil, fmt.Errorf("%w: pairing length field %d outside %d..%d", ErrMalformed, n, PairHeaderLen+1, PairMaxLen)
	}
	if n > len(b) {
		return nil, fmt.Errorf("%w: length field %d, %d bytes", ErrShort, n, len(b))
	}
	for _, r := range b[offFlags:PairHeaderLen] {
		if r != 0 {
			return nil, fmt.Errorf("%w: reserved bytes of a pairing frame set", ErrMalformed)
		}
	}
	return b[PairHeaderLen:n:n], nil
}
