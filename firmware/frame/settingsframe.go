package frame

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
)

// Settings frames carry a node's pair-level settings (the encoding of
// package firmware/pairing, about 300 bytes) to its peer, so that a
// running pair finds out when one side's config changed: the alarm
// settings-mismatch. A node repeats them at peer-up and every few seconds.
//
// They are protocol version 2 frames of TypeSettings with the heartbeat's
// length, prefix and authenticator (HMAC-SHA256 under the pair key, so
// the heartbeat's socket filter passes them and an older node, whose
// decoder knows no type 4, drops them as malformed without an alarm), and
// a body of their own: one part of the settings, a digest of all of them
// to put the parts together, and the (boot id, sequence) of the
// heartbeats for the replay window, from the same counter.
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|     magic 'P' 'G' (2)         |  version 2    | type SETTINGS |  0
//	+-------------------------------+---------------+---------------+
//	|   length 116 (2)              |      flags, zero (2)          |  4
//	+-------------------------------+-------------------------------+
//	|                          pair id (4)                          |  8
//	+---------------------------------------------------------------+
//	|                          node id (8)                          | 12
//	+---------------------------------------------------------------+
//	|                          boot id (8)                          | 20
//	+---------------------------------------------------------------+
//	|                         sequence (8)                          | 28
//	+---------------------------------------------------------------+
//	|     digest (16): SHA-256 of the whole settings, first bytes   | 36
//	+-------------------------------+---------------+---------------+
//	|  total length (2)             | part index(1) | part count (1)| 52
//	+-------------------------------+---------------+---------------+
//	|  part (44): bytes index*44 .. of the settings, zero padded    | 56
//	+---------------------------------------------------------------+
//	|  authenticator (16): HMAC-SHA256(pair key, bytes 0..99)[:16]  | 100
//	+---------------------------------------------------------------+
//	                                                                  116

// Sizes of the settings frame.
const (
	// SettingsPartLen is the number of settings bytes one frame carries.
	SettingsPartLen = 44
	// SettingsMaxLen bounds the settings a sequence of frames carries.
	SettingsMaxLen = 1024
	// SettingsDigestLen is the length of the digest of the settings.
	SettingsDigestLen = 16

	offSetBoot   = 20
	offSetSeq    = 28
	offSetDigest = 36
	offSetTotal  = 52
	offSetIndex  = 54
	offSetCount  = 55
	offSetPart   = 56
)

// SettingsPart is one settings frame.
type SettingsPart struct {
	PairID uint32
	NodeID uint64
	BootID uint64
	Seq    uint64
	// Digest identifies the settings the part belongs to.
	Digest [SettingsDigestLen]byte
	// Total is the length of the whole settings; Index and Count place the
	// part among Count = ceil(Total / SettingsPartLen) parts.
	Total        uint16
	Index, Count uint8
	// Data is the part: SettingsPartLen bytes, fewer in the last part.
	Data []byte
}

// IsSettingsFrame reports whether b is laid out as a settings frame:
// the magic, version 2 and TypeSettings. It reads nothing else.
func IsSettingsFrame(b []byte) bool {
	return len(b) >= prefixLen && b[0] == magic[0] && b[1] == magic[1] &&
		b[offVersion] == ProtocolVersion && b[offType] == byte(TypeSettings)
}

// partLen is the number of bytes of part index of settings of length total.
func partLen(total, index int) int {
	return min(SettingsPartLen, total-index*SettingsPartLen)
}

func partCount(total int) int { return (total + SettingsPartLen - 1) / SettingsPartLen }

// SettingsParts splits encoded settings into the parts that carry them,
// each a copy of tmpl (PairID, NodeID, BootID) with the digest, the
// placement and its data set; the caller sets Seq.
func SettingsParts(settings []byte, tmpl SettingsPart) ([]SettingsPart, error) {
	if len(settings) == 0 || len(settings) > SettingsMaxLen {
		return nil, fmt.Errorf("%w: settings of %d bytes, want 1 to %d", ErrInvalid, len(settings), SettingsMaxLen)
	}
	sum := sha256.Sum256(settings)
	n := partCount(len(settings))
	parts := make([]SettingsPart, n)
	for i := range parts {
		p := tmpl
		copy(p.Digest[:], sum[:])
		p.Total, p.Index, p.Count = uint16(len(settings)), uint8(i), uint8(n)
		off := i * SettingsPartLen
		p.Data = settings[off : off+partLen(len(settings), i)]
		parts[i] = p
	}
	return parts, nil
}

// valid checks the placement of a part.
func (p *SettingsPart) valid() error {
	total := int(p.Total)
	switch {
	case total == 0 || total > SettingsMaxLen:
		return fmt.Errorf("settings of %d bytes", total)
	case int(p.Count) != partCount(total) || p.Index >= p.Count:
		return fmt.Errorf("part %d of %d for %d bytes", p.Index, p.Count, total)
	case len(p.Data) != partLen(total, int(p.Index)):
		return fmt.Errorf("part %d of %d bytes", p.Index, len(p.Data))
	}
	return nil
}

// AppendBinary appends the settings frame, authenticated under key, to
// dst. A nil key leaves the authenticator zero (tests and captures only).
func (p *SettingsPart) AppendBinary(dst []byte, key *Key) ([]byte, error) {
	if err := p.valid(); err != nil {
		return dst, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	start := len(dst)
	dst = append(dst, make([]byte, Len)...)
	b := dst[start:]
	clear(b)
	b[0], b[1] = magic[0], magic[1]
	b[offVersion], b[offType] = ProtocolVersion, byte(TypeSettings)
	binary.BigEndian.PutUint16(b[offLength:], Len)
	binary.BigEndian.PutUint32(b[offPair:], p.PairID)
	binary.BigEndian.PutUint64(b[offNode:], p.NodeID)
	binary.BigEndian.PutUint64(b[offSetBoot:], p.BootID)
	binary.BigEndian.PutUint64(b[offSetSeq:], p.Seq)
	copy(b[offSetDigest:], p.Digest[:])
	binary.BigEndian.PutUint16(b[offSetTotal:], p.Total)
	b[offSetIndex], b[offSetCount] = p.Index, p.Count
	copy(b[offSetPart:offAuth], p.Data)
	if key != nil {
		key.seal(b)
	}
	return dst, nil
}

// DecodeSettings checks a settings frame and parses it into p, in the
// order of Decode: the prefix and the exact length (ErrShort,
// ErrMagic, ErrMalformed), the pair id (ErrPair), the authenticator
// (ErrAuth); then the type, the zero flags, the placement and the zero
// padding (ErrMalformed). p.Data is a copy. p is written only on success.
func DecodeSettings(b []byte, key *Key, p *SettingsPart) error {
	n, err := prefix(b)
	if err != nil {
		return err
	}
	if b[offVersion] != ProtocolVersion {
		return fmt.Errorf("%w: version %d is not a settings frame", ErrMalformed, b[offVersion])
	}
	if binary.BigEndian.Uint32(b[offPair:]) != key.pair {
		return ErrPair
	}
	b = b[:n]
	if !key.verify(b) {
		return ErrAuth
	}
	return p.parse(b)
}

// UnmarshalBinary parses a settings frame WITHOUT checking the pair id
// or the authenticator (captures and tests only).
func (p *SettingsPart) UnmarshalBinary(b []byte) error {
	n, err := prefix(b)
	if err != nil {
		return err
	}
	if b[offVersion] != ProtocolVersion {
		return fmt.Errorf("%w: version %d is not a settings frame", ErrMalformed, b[offVersion])
	}
	return p.parse(b[:n])
}

func (p *SettingsPart) parse(b []byte) error {
	if Type(b[offType]) != TypeSettings {
		return fmt.Errorf("%w: type %d is not a settings frame", ErrMalformed, b[offType])
	}
	if binary.BigEndian.Uint16(b[offFlags:]) != 0 {
		return fmt.Errorf("%w: flags of a settings frame set", ErrMalformed)
	}
	out := SettingsPart{
		PairID: binary.BigEndian.Uint32(b[offPair:]),
		NodeID: binary.BigEndian.Uint64(b[offNode:]),
		BootID: binary.BigEndian.Uint64(b[offSetBoot:]),
		Seq:    binary.BigEndian.Uint64(b[offSetSeq:]),
		Total:  binary.BigEndian.Uint16(b[offSetTotal:]),
		Index:  b[offSetIndex],
		Count:  b[offSetCount],
	}
	copy(out.Digest[:], b[offSetDigest:offSetTotal])
	total := int(out.Total)
	if total == 0 || total > SettingsMaxLen || int(out.Count) != partCount(total) || out.Index >= out.Count {
		return fmt.Errorf("%w: settings part %d of %d for %d bytes", ErrMalformed, out.Index, out.Count, total)
	}
	n := partLen(total, int(out.Index))
	for _, c := range b[offSetPart+n : offAuth] {
		if c != 0 {
			return fmt.Errorf("%w: padding of a settings part set", ErrMalformed)
		}
	}
	out.Data = bytes.Clone(b[offSetPart : offSetPart+n])
	*p = out
	return nil
}

// SettingsAssembler puts the parts of one node's settings together. The
// zero value is ready.
type SettingsAssembler struct {
	node   uint64
	digest [SettingsDigestLen]byte
	total  int
	have   uint64 // bit i: part i is in buf
	buf    []byte
}

// Add takes a decoded part and returns the whole settings when it was the
// last missing part of them and they match their digest (a copy; nil
// otherwise). A part of another node, digest or length starts over.
func (a *SettingsAssembler) Add(p *SettingsPart) []byte {
	if p.valid() != nil {
		return nil
	}
	if a.buf == nil || p.NodeID != a.node || p.Digest != a.digest || int(p.Total) != a.total {
		a.node, a.digest, a.total, a.have = p.NodeID, p.Digest, int(p.Total), 0
		a.buf = make([]byte, a.total)
	}
	copy(a.buf[int(p.Index)*SettingsPartLen:], p.Data)
	a.have |= 1 << p.Index
	if a.have != 1<<p.Count-1 {
		return nil
	}
	a.have = 0 // the next round of parts delivers them again
	if sum := sha256.Sum256(a.buf); !bytes.Equal(sum[:SettingsDigestLen], a.digest[:]) {
		return nil
	}
	return bytes.Clone(a.buf)
}
