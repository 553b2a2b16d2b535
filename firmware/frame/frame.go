// Package frame encodes, decodes and authenticates the frames that two
// Pairguard nodes exchange on the failover line (LAN 2) and, at a lower
// rate, on LAN 1.
//
// A frame travels as the payload of an Ethernet frame of EtherType 0x88B5
// (IEEE 802 local experimental). It is authenticated with HMAC-SHA256,
// truncated to 16 bytes, under the pair key; replay protection is by
// (boot id, sequence number), see [Replay]. Freshness after a restart is by
// a nonce: every frame carries the sender's nonce, drawn at each start, and
// echoes the nonce it last heard from the peer; a receiver trusts a frame
// to move it only when the echo is its own current nonce (the role engine
// applies that rule).
//
// A decoder checks the cheap things before the HMAC: the magic, the exact
// length of the frame's version and the pair id. A flood of garbage costs a
// few comparisons per frame; only frames of the right length and pair id
// are authenticated.
//
// The package is pure: it makes no system calls and reads no clock.
//
// Receive path, in order:
//
//	err := frame.Decode(payload, key, &f) // length, magic, pair, HMAC, version
//	if err == nil {
//		err = replay.Check(f.NodeID, f.BootID, f.Seq)
//	}
//	counters.Record(err)
//	// errors.Is(err, frame.ErrVersion): alarm "incompatible peer", no takeover.
//
// Send path: fill a Frame, increment Seq (one counter per boot, shared by
// both paths, set FlagLAN1 on the LAN 1 copy), then
// buf, err = f.AppendBinary(buf[:0], key), which allocates nothing once buf
// has capacity [Len].
package frame

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/pairguard/pairguard/firmware/frame/hmackey"
)

// EtherType is the Ethernet type of failover-line frames (IEEE 802 local
// experimental EtherType 1).
const EtherType uint16 = 0x88B5

// ProtocolVersion is the protocol version this package writes and the only
// one it decodes beyond the version-independent prefix. Version 2 added the
// nonce and its echo (freshness after a restart); version 1 frames are
// authenticated and reported as another protocol.
const ProtocolVersion uint8 = 2

// Sizes of the protocol version 2 frame.
const (
	// Len is the length in bytes of a version 2 frame, authenticator
	// included. It is larger than the 46-byte Ethernet minimum payload, but
	// decoders accept trailing padding anyway.
	Len = 116
	// AuthLen is the length of the truncated HMAC-SHA256 authenticator,
	// always the last bytes of the frame (of any version).
	AuthLen = 16
	// SoftwareLen is the maximum length of the software version string.
	SoftwareLen = 16
	// MaxLen is the longest frame a decoder authenticates: a frame of a
	// version this package does not know (a newer peer) may be at most
	// this long. Frames of a known version must have exactly its length.
	MaxLen = 256
	// Magic opens every frame of every version.
	Magic = "PG"
	// PairIDOffset is the offset of the pair id (4 bytes, big-endian) in a
	// frame of every version, for filters that drop foreign frames before
	// they reach the decoder (a socket filter, a dissector).
	PairIDOffset = offPair
	// VersionOffset is the offset of the protocol version in a frame of
	// every version.
	VersionOffset = offVersion
	// prefixLen is the version-independent prefix: magic, version, type,
	// length, flags, pair id.
	prefixLen = 12
	// minLen is the smallest frame of any version: prefix and authenticator.
	minLen = prefixLen + AuthLen
)

// VersionLen returns the frame length of the protocol versions this
// package knows (0 for others), for filters that drop frames of the wrong
// length before they reach the decoder.
func VersionLen(v uint8) int {
	switch v {
	case 1:
		return 100
	case ProtocolVersion:
		return Len
	}
	return 0
}

// magic opens every frame: "PG".
var magic = [2]byte{Magic[0], Magic[1]}

// Sentinel errors. Decode wraps them with details; compare with errors.Is.
var (
	// ErrShort: the payload is shorter than the frame it announces, or
	// than any frame. It wraps io.ErrUnexpectedEOF.
	ErrShort = fmt.Errorf("frame: short frame: %w", io.ErrUnexpectedEOF)
	// ErrMagic: the payload is not a Pairguard frame.
	ErrMagic = errors.New("frame: bad magic, not a pairguard frame")
	// ErrAuth: the authenticator does not match: a forged or corrupted
	// frame, or a peer configured with another pair key.
	ErrAuth = errors.New("frame: authentication failed")
	// ErrVersion: an authenticated frame of another protocol version. The
	// error is a *VersionError carrying the version.
	ErrVersion = errors.New("frame: incompatible protocol version")
	// ErrPair: a frame with another pair id (checked before the
	// authenticator: a frame of another pair would not authenticate).
	ErrPair = errors.New("frame: foreign pair id")
	// ErrMalformed: a frame whose length field is not its version's
	// length (checked before the authenticator), or an authenticated
	// frame whose content is invalid (unknown type, software string too
	// long).
	ErrMalformed = errors.New("frame: malformed frame")
	// ErrInvalid: AppendBinary was given a frame it cannot encode.
	ErrInvalid = errors.New("frame: invalid frame")
	// ErrReplay: Replay.Check saw a repeated sequence number or a frame
	// from an older boot of the peer.
	ErrReplay = errors.New("frame: replayed frame")
)

// The errors of the checks before the HMAC: built once, so that a flood of
// garbage allocates nothing.
var (
	errTooShort    = fmt.Errorf("%w: shorter than any frame", ErrShort)
	errCut         = fmt.Errorf("%w: shorter than its length field", ErrShort)
	errVersionZero = fmt.Errorf("%w: version 0", ErrMalformed)
	errLength      = fmt.Errorf("%w: length field is not its version's length", ErrMalformed)
	errLengthRange = fmt.Errorf("%w: length field of an unknown version outside %d..%d", ErrMalformed, minLen, MaxLen)
)

// VersionError is returned by Decode for an authenticated frame of another
// protocol version. errors.Is(err, ErrVersion) reports true for it.
type VersionError struct {
	// Version is the protocol version the peer speaks.
	Version uint8
}

func (e *VersionError) Error() string {
	return fmt.Sprintf("frame: incompatible protocol version %d (want %d)", e.Version, ProtocolVersion)
}

// Is makes errors.Is(err, ErrVersion) true.
func (e *VersionError) Is(target error) bool { return target == ErrVersion }

// Type is the kind of a frame. The zero value is invalid.
type Type uint8

// Frame types.
const (
	typeInvalid Type = iota // invalid
	// TypeHeartbeat is the periodic announcement of a node's state.
	TypeHeartbeat // heartbeat
	// TypeRelease tells the peer that the sender has released the service
	// address and the peer may claim it at once (swap, orderly shutdown).
	TypeRelease // release
	// TypePairHello is reserved for pairing two units. The engine neither
	// sends nor takes it; the decoder accepts it.
	TypePairHello // pair-hello
	// TypeSettings is a part of the sender's pair-level settings, in a
	// layout of its own (SettingsPart, DecodeSettings); it is not a Frame
	// type: Decode and AppendBinary refuse it.
	TypeSettings // settings
)

// Valid reports whether t is one of the types of the Frame layout
// (TypeSettings has its own).
func (t Type) Valid() bool { return t > typeInvalid && t <= TypePairHello }

// Flags is a set of frame flags.
type Flags uint16

// Frame flags.
const (
	// FlagPreferred: the sender is the preferred main.
	FlagPreferred Flags = 1 << 0
	// FlagHandover: the sender is handing the service over (swap).
	FlagHandover Flags = 1 << 1
	// FlagLAN1: the frame was sent on the LAN 1 path, not the failover line.
	FlagLAN1 Flags = 1 << 2
	// FlagForced: the sender's role was forced by an operator.
	FlagForced Flags = 1 << 3
	// FlagEligible: the sender could become primary now (up-to-date data,
	// witness reachable, no fault).
	FlagEligible Flags = 1 << 4
)

var flagNames = [...]string{"preferred", "handover", "lan1", "forced", "eligible"}

// Has reports whether all flags of g are set in f.
func (f Flags) Has(g Flags) bool { return f&g == g }

func (f Flags) String() string {
	if f == 0 {
		return "none"
	}
	var b []byte
	for i, n := range flagNames {
		if f&(1<<i) != 0 {
			if len(b) > 0 {
				b = append(b, '|')
			}
			b = append(b, n...)
		}
	}
	if rest := f &^ (1<<len(flagNames) - 1); rest != 0 {
		if len(b) > 0 {
			b = append(b, '|')
		}
		b = fmt.Appendf(b, "0x%x", uint16(rest))
	}
	return string(b)
}

// Frame is a failover-line frame.
//
// Mode, Role, DataState and MirrorState carry the numeric values of the
// enums of package github.com/pairguard/pairguard/firmware/engine
// (engine.Mode, engine.Role, engine.DataState, engine.MirrorState); this
// package does not interpret them, so it does not import the engine.
//
// Wire layout of protocol version 2, all integers big-endian. The first 12
// bytes (magic, version, type, length, flags, pair id) and the trailing
// authenticator keep their meaning in every protocol version, so that a
// frame of another version can be filtered, authenticated and reported as
// incompatible.
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|     magic 'P' 'G' (2)         |  version (1)  |   type (1)    |  0
//	+-------------------------------+---------------+---------------+
//	|   length (2), auth included   |           flags (2)           |  4
//	+-------------------------------+-------------------------------+
//	|                          pair id (4)                          |  8
//	+---------------------------------------------------------------+
//	|                          node id (8)                          | 12
//	|                                                               |
//	+---------------+---------------+---------------+---------------+
//	|   mode (1)    |   role (1)    | data state(1) |mirror state(1)| 20
//	+---------------+---------------+---------------+---------------+
//	|mirror pct (1) |software len(1)|      reserved, zero (2)       | 24
//	+---------------+---------------+-------------------------------+
//	|                           epoch (8)                           | 28
//	|                                                               |
//	+---------------------------------------------------------------+
//	|                          boot id (8)                          | 36
//	|                                                               |
//	+---------------------------------------------------------------+
//	|                         sequence (8)                          | 44
//	|                                                               |
//	+---------------------------------------------------------------+
//	|                      data generation (8)                      | 52
//	|                                                               |
//	+---------------------------------------------------------------+
//	|               history, previous generation (8)                | 60
//	|                                                               |
//	+---------------------------------------------------------------+
//	|            nonce (8): the sender's, new at each start         | 68
//	|                                                               |
//	+---------------------------------------------------------------+
//	|     echo (8): the nonce last heard from the peer, 0 if none   | 76
//	|                                                               |
//	+---------------------------------------------------------------+
//	|          software version, zero padded (16)                   | 84
//	|                                                               |
//	+---------------------------------------------------------------+
//	|  authenticator (16): HMAC-SHA256(pair key, bytes 0..99)[:16]  | 100
//	|                                                               |
//	+---------------------------------------------------------------+
//	                                                                  116
//
// The length field must be the version's length (100 for version 1, 116
// for version 2, at most MaxLen for an unknown version); bytes after it
// are Ethernet padding and ignored. The authenticator is always the last
// 16 bytes of length.
type Frame struct {
	// Version is the protocol version. AppendBinary writes ProtocolVersion
	// when it is zero; Decode sets it.
	Version uint8
	// Type is the kind of frame.
	Type Type
	// Flags qualify the frame.
	Flags Flags
	// PairID identifies the pair; see PairID.
	PairID uint32
	// NodeID identifies the sender.
	NodeID uint64
	// Mode is the sender's configured mode (engine.Mode).
	Mode uint8
	// Role is the sender's role (engine.Role).
	Role uint8
	// DataState is the state of the sender's datastore (engine.DataState).
	DataState uint8
	// MirrorState is the state of the sender's mirror (engine.MirrorState).
	MirrorState uint8
	// MirrorPercent is the resync progress, 0 to 100.
	MirrorPercent uint8
	// Epoch is the sender's epoch.
	Epoch uint64
	// BootID is a counter the sender persists and increments at every
	// start: it only grows.
	BootID uint64
	// Seq is the sender's sequence number, per boot, shared by both paths.
	Seq uint64
	// Generation is the sender's current data generation.
	Generation uint64
	// History is the sender's previous data generation.
	History uint64
	// Nonce is a random value the sender draws at each start. A peer
	// echoes it to prove that its frame was sent after that start.
	Nonce uint64
	// Echo is the nonce of the last frame the sender accepted from its
	// peer, 0 before it heard one.
	Echo uint64
	// Software is the sender's software version, at most SoftwareLen bytes.
	Software string
}

// Byte offsets of version 1 fields.
const (
	offVersion  = 2
	offType     = 3
	offLength   = 4
	offFlags    = 6
	offPair     = 8
	offNode     = 12
	offMode     = 20
	offRole     = 21
	offData     = 22
	offMirror   = 23
	offPercent  = 24
	offSoftLen  = 25
	offEpoch    = 28
	offBoot     = 36
	offSeq      = 44
	offGen      = 52
	offHistory  = 60
	offNonce    = 68
	offEcho     = 76
	offSoftware = 84
	offAuth     = 100
)

// Key is a pair key prepared for authenticating frames. It is safe for
// concurrent use; authentication is serialised by a mutex.
type Key struct {
	mac  *hmackey.MAC
	pair uint32
}

// NewKey prepares secret, the pair key of the configuration, for
// authentication. The caller rejects empty or weak secrets when validating
// the configuration.
func NewKey(secret []byte) *Key {
	return &Key{mac: hmackey.New(secret), pair: PairID(secret)}
}

// PairID returns the pair id derived from the pair key: the first four
// bytes, big-endian, of SHA-256("pairguard pair id\x00" || secret).
func PairID(secret []byte) uint32 { return hmackey.PairID("pairguard pair id", secret) }

// PairID returns the pair id derived from the key's secret.
func (k *Key) PairID() uint32 { return k.pair }

// seal writes the authenticator of b[:len(b)-AuthLen] into the last AuthLen
// bytes of b.
func (k *Key) seal(b []byte) { k.mac.Seal(b, AuthLen) }

// verify reports whether the last AuthLen bytes of b authenticate the rest,
// in constant time.
func (k *Key) verify(b []byte) bool { return k.mac.Verify(b, AuthLen) }

// AppendBinary appends the encoded frame to dst, authenticated under key,
// and returns the extended slice. It allocates nothing when dst has Len
// bytes of spare capacity. A nil key leaves the authenticator zero, for
// tests and captures only; a peer rejects such a frame.
func (f *Frame) AppendBinary(dst []byte, key *Key) ([]byte, error) {
	if !f.Type.Valid() {
		return dst, fmt.Errorf("%w: type %d", ErrInvalid, uint8(f.Type))
	}
	if len(f.Software) > SoftwareLen {
		return dst, fmt.Errorf("%w: software version %q longer than %d bytes", ErrInvalid, f.Software, SoftwareLen)
	}
	v := f.Version
	if v == 0 {
		v = ProtocolVersion
	}
	start := len(dst)
	dst = append(dst, make([]byte, Len)...) // does not allocate when cap suffices
	b := dst[start:]
	clear(b)
	b[0], b[1] = magic[0], magic[1]
	b[offVersion] = v
	b[offType] = byte(f.Type)
	binary.BigEndian.PutUint16(b[offLength:], Len)
	binary.BigEndian.PutUint16(b[offFlags:], uint16(f.Flags))
	binary.BigEndian.PutUint32(b[offPair:], f.PairID)
	binary.BigEndian.PutUint64(b[offNode:], f.NodeID)
	b[offMode] = f.Mode
	b[offRole] = f.Role
	b[offData] = f.DataState
	b[offMirror] = f.MirrorState
	b[offPercent] = f.MirrorPercent
	b[offSoftLen] = byte(len(f.Software))
	binary.BigEndian.PutUint64(b[offEpoch:], f.Epoch)
	binary.BigEndian.PutUint64(b[offBoot:], f.BootID)
	binary.BigEndian.PutUint64(b[offSeq:], f.Seq)
	binary.BigEndian.PutUint64(b[offGen:], f.Generation)
	binary.BigEndian.PutUint64(b[offHistory:], f.History)
	binary.BigEndian.PutUint64(b[offNonce:], f.Nonce)
	binary.BigEndian.PutUint64(b[offEcho:], f.Echo)
	copy(b[offSoftware:offSoftware+SoftwareLen], f.Software)
	if key != nil {
		key.seal(b)
	}
	return dst, nil
}

// MarshalBinary implements encoding.BinaryMarshaler. It cannot
// authenticate: the authenticator is left zero. Use AppendBinary with a
// Key for frames that go on the wire.
func (f *Frame) MarshalBinary() ([]byte, error) {
	return f.AppendBinary(make([]byte, 0, Len), nil)
}

// UnmarshalBinary implements encoding.BinaryUnmarshaler. It parses b
// WITHOUT checking the authenticator or the pair id: use it for captures
// and tests only, and Decode for frames from the wire. It accepts trailing
// padding and returns the errors of Decode other than ErrAuth and ErrPair.
func (f *Frame) UnmarshalBinary(b []byte) error {
	n, err := prefix(b)
	if err != nil {
		return err
	}
	return f.parse(b[:n])
}

// Decode parses an Ethernet payload b into f after checking, in order: the
// prefix is there (ErrShort), the magic (ErrMagic), the length field is
// the version's length (ErrMalformed) and within b (ErrShort), the pair id
// against key.PairID() (ErrPair); only then the authenticator under key
// (ErrAuth), the protocol version (*VersionError, ErrVersion) and the
// content (ErrMalformed). Trailing bytes after the length (Ethernet
// padding) are ignored. f is written only on success. Decode allocates
// only when the software version string changes. key must not be nil.
func Decode(b []byte, key *Key, f *Frame) error {
	n, err := prefix(b)
	if err != nil {
		return err
	}
	if binary.BigEndian.Uint32(b[offPair:]) != key.pair {
		return ErrPair
	}
	b = b[:n]
	if !key.verify(b) {
		return ErrAuth
	}
	return f.parse(b)
}

// prefix checks the version-independent prefix of b and returns the frame
// length it announces, which is the length of the frame's version.
func prefix(b []byte) (int, error) {
	if len(b) < prefixLen {
		return 0, errTooShort
	}
	if b[0] != magic[0] || b[1] != magic[1] {
		return 0, ErrMagic
	}
	v := b[offVersion]
	n := int(binary.BigEndian.Uint16(b[offLength:]))
	switch want := VersionLen(v); {
	case v == 0:
		return 0, errVersionZero
	case want != 0 && n != want:
		return 0, errLength
	case want == 0 && (n < minLen || n > MaxLen):
		return 0, errLengthRange
	}
	if n > len(b) {
		return 0, errCut
	}
	return n, nil
}

// parse decodes the fields of b, exactly one frame with its authenticator,
// into f. f is left unchanged on error.
func (f *Frame) parse(b []byte) error {
	if v := b[offVersion]; v != ProtocolVersion {
		return &VersionError{Version: v}
	}
	t := Type(b[offType])
	if !t.Valid() {
		return fmt.Errorf("%w: type %d", ErrMalformed, uint8(t))
	}
	sl := int(b[offSoftLen])
	if sl > SoftwareLen {
		return fmt.Errorf("%w: software length %d", ErrMalformed, sl)
	}
	f.Version = b[offVersion]
	f.Type = t
	f.Flags = Flags(binary.BigEndian.Uint16(b[offFlags:]))
	f.PairID = binary.BigEndian.Uint32(b[offPair:])
	f.NodeID = binary.BigEndian.Uint64(b[offNode:])
	f.Mode = b[offMode]
	f.Role = b[offRole]
	f.DataState = b[offData]
	f.MirrorState = b[offMirror]
	f.MirrorPercent = b[offPercent]
	f.Epoch = binary.BigEndian.Uint64(b[offEpoch:])
	f.BootID = binary.BigEndian.Uint64(b[offBoot:])
	f.Seq = binary.BigEndian.Uint64(b[offSeq:])
	f.Generation = binary.BigEndian.Uint64(b[offGen:])
	f.History = binary.BigEndian.Uint64(b[offHistory:])
	f.Nonce = binary.BigEndian.Uint64(b[offNonce:])
	f.Echo = binary.BigEndian.Uint64(b[offEcho:])
	if sw := b[offSoftware : offSoftware+sl]; f.Software != string(sw) { // no allocation for the comparison
		f.Software = string(sw)
	}
	return nil
}
