package arbiter

import (
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/pairguard/pairguard/firmware/frame/hmackey"
)

// ProtocolVersion is the version of the arbiter protocol this package speaks.
const ProtocolVersion uint8 = 1

// Datagram lengths of protocol version 1, authenticator included. A
// datagram of any other length is refused before its authenticator is
// computed.
const (
	RequestLen = 104
	ReplyLen   = 100
	// AuthLen is the length of the HMAC-SHA256 authenticator, the last
	// bytes of every datagram.
	AuthLen = sha256.Size
)

// magic opens every datagram: "PA".
var magic = [2]byte{'P', 'A'}

// Sentinel errors of the decoders; compare with errors.Is.
var (
	// ErrLength: the datagram is not as long as its kind. It wraps
	// io.ErrUnexpectedEOF when it is shorter.
	ErrLength = errors.New("arbiter: wrong datagram length")
	// ErrMagic: not an arbiter datagram.
	ErrMagic = errors.New("arbiter: bad magic")
	// ErrVersion: another protocol version.
	ErrVersion = errors.New("arbiter: unsupported protocol version")
	// ErrAuth: the authenticator does not match the key.
	ErrAuth = errors.New("arbiter: authentication failed")
	// ErrPair: authenticated, but for another pair id than the key's.
	ErrPair = errors.New("arbiter: foreign pair id")
	// ErrMalformed: authenticated, but a field holds an invalid value.
	ErrMalformed = errors.New("arbiter: malformed datagram")
	// ErrInvalid: Append was given a value it cannot encode.
	ErrInvalid = errors.New("arbiter: invalid value")
)

// keyInfo is the HKDF label of the arbiter key: a key of its own, so that
// whoever holds it (the arbiter) cannot authenticate heartbeats, which use
// the pair key itself.
const keyInfo = "pairguard arbiter key v1"

// DeriveKey returns the arbiter key of a pair: HKDF-SHA256 of the pair key
// with no salt and the label "pairguard arbiter key v1", 32 bytes. It is
// what `pairguard arbiter-key` prints for `[[arbiter.pair]] key`.
func DeriveKey(pairKey []byte) []byte {
	k, err := hkdf.Key(sha256.New, pairKey, nil, keyInfo, 32)
	if err != nil {
		panic("arbiter: hkdf: " + err.Error()) // only for lengths above 255×32
	}
	return k
}

// FormatKey writes an arbiter key as `pairguard arbiter-key` prints it and
// `[[arbiter.pair]] key` takes it: 64 lower-case hex digits.
func FormatKey(arbiterKey []byte) string { return hex.EncodeToString(arbiterKey) }

// ParseKey reads a key written by FormatKey.
func ParseKey(s string) ([]byte, error) {
	k, err := hex.DecodeString(s)
	if err != nil || len(k) != 32 {
		return nil, fmt.Errorf("arbiter key: want 64 hex digits (pairguard arbiter-key prints it)")
	}
	return k, nil
}

// PairID returns the pair id of an arbiter key: the first four bytes,
// big-endian, of SHA-256("pairguard arbiter pair id\x00" || key). The
// arbiter knows only the derived key, so the id is computed from it.
func PairID(arbiterKey []byte) uint32 {
	return hmackey.PairID("pairguard arbiter pair id", arbiterKey)
}

// Key is an arbiter key prepared for authentication; safe for concurrent use.
type Key struct {
	mac  *hmackey.MAC
	pair uint32
}

// NewKey prepares an arbiter key (DeriveKey's result, not the pair key).
func NewKey(arbiterKey []byte) *Key {
	return &Key{mac: hmackey.New(arbiterKey), pair: PairID(arbiterKey)}
}

// PairID returns the pair id of the key.
func (k *Key) PairID() uint32 { return k.pair }

func (k *Key) seal(b []byte) { k.mac.Seal(b, AuthLen) }

func (k *Key) verify(b []byte) bool { return k.mac.Verify(b, AuthLen) }

// Type is the type of a datagram; requests and replies share one numbering
// so that neither can be taken for the other.
type Type uint8

// Datagram types.
const (
	typeInvalid Type = iota // invalid
	// RequestAcquire asks for a lease or renews it.
	RequestAcquire // acquire
	// RequestRelease gives the lease back (the address is released).
	RequestRelease // release
	// ReplyGrant: the lease is granted.
	ReplyGrant // grant
	// ReplyDeny: it is not; Reason says why.
	ReplyDeny // deny
)

// Mode is the configured mode of the asking node.
type Mode uint8

// Modes.
const (
	modeInvalid Mode = iota // invalid
	ModeMain                // main
	ModeSpare               // spare
)

// Role is the runtime role of the asking node (for the arbiter's status).
type Role uint8

// Roles, as the engine names them.
const (
	roleInvalid   Role = iota // invalid
	RoleStarting              // starting
	RolePrimary               // primary
	RoleSecondary             // secondary
	RoleFault                 // fault
)

// Data is the state of the asking node's datastore.
type Data uint8

// Data states, in DRBD's vocabulary.
const (
	dataInvalid      Data = iota // invalid
	DataUpToDate                 // up-to-date
	DataOutdated                 // outdated
	DataInconsistent             // inconsistent
)

// Reason says why a lease was denied.
type Reason uint8

// Reasons.
const (
	// ReasonNone: granted.
	ReasonNone Reason = iota // none
	// ReasonHeld: another node holds the lease.
	ReasonHeld // held
	// ReasonStarting: the arbiter waits one lease after its start.
	ReasonStarting // starting
	// ReasonPreferred: another node asking in the window is preferred.
	ReasonPreferred // preferred
	// ReasonStaleCounter: the request's counter is not above the last
	// one (Floor says where to go on).
	ReasonStaleCounter // stale-counter
	// ReasonReleased: the answer to a release.
	ReasonReleased // released
	// ReasonUnknownPair: the arbiter does not serve the pair (never sent:
	// it has no key).
	ReasonUnknownPair // unknown-pair
	// ReasonDeciding: the pair is free; the arbiter waits out the
	// decision window.
	ReasonDeciding // deciding
	reasonMax      // invalid
)

// Request is a node's request to the arbiter.
//
//	 0  magic "PA"                  2
//	 2  protocol version (1)        1
//	 3  type (acquire, release)     1
//	 4  pair id                     4
//	 8  node id                     8
//	16  counter (grows per node)    8
//	24  nonce (fresh, echoed)      16
//	40  epoch                       8
//	48  data generation             8
//	56  history generation          8
//	64  lease asked for, ms         4
//	68  mode                        1
//	69  role                        1
//	70  data state                  1
//	71  flags (bit 0: peer heard)   1
//	72  HMAC-SHA256 of 0..71       32
//	104
//
// Integers are big-endian.
type Request struct {
	Type       Type
	Pair       uint32
	Node       uint64
	Counter    uint64
	Nonce      [16]byte
	Epoch      uint64
	Generation uint64
	History    uint64
	TTL        time.Duration // millisecond resolution
	Mode       Mode
	Role       Role
	Data       Data
	PeerHeard  bool
}

// Reply is the arbiter's answer.
//
//	 0  magic "PA"                  2
//	 2  protocol version (1)        1
//	 3  type (grant, deny)          1
//	 4  pair id                     4
//	 8  node id of the requester    8
//	16  nonce of the request       16
//	32  holder (0: nobody)          8
//	40  epoch of the holder's grant 8
//	48  floor: lowest counter taken 8
//	56  lease granted, ms           4
//	60  retry after, ms             4
//	64  reason                      1
//	65  reserved (zero)             3
//	68  HMAC-SHA256 of 0..67       32
//	100
type Reply struct {
	Type       Type
	Pair       uint32
	Node       uint64
	Nonce      [16]byte
	Holder     uint64
	Epoch      uint64
	Floor      uint64
	TTL        time.Duration // millisecond resolution
	RetryAfter time.Duration // millisecond resolution, rounded up
	Reason     Reason
}

func msOf(d time.Duration, up bool) (uint32, bool) {
	if d < 0 {
		return 0, false
	}
	ms := d / time.Millisecond
	if up && d%time.Millisecond != 0 {
		ms++
	}
	if ms > 1<<32-1 {
		return 0, false
	}
	return uint32(ms), true
}

func header(b []byte, typ Type, pair uint32) []byte {
	b = append(b, magic[0], magic[1], ProtocolVersion, byte(typ))
	return binary.BigEndian.AppendUint32(b, pair)
}

// Append appends the request, authenticated with k, to b.
func (r Request) Append(b []byte, k *Key) ([]byte, error) {
	ttl, ok := msOf(r.TTL, false)
	switch {
	case r.Type != RequestAcquire && r.Type != RequestRelease:
		return b, fmt.Errorf("%w: request type %d", ErrInvalid, r.Type)
	case !ok:
		return b, fmt.Errorf("%w: ttl %v", ErrInvalid, r.TTL)
	case r.Mode == modeInvalid || r.Mode > ModeSpare || r.Role == roleInvalid || r.Role > RoleFault ||
		r.Data == dataInvalid || r.Data > DataInconsistent:
		return b, fmt.Errorf("%w: mode %s, role %s, data %s", ErrInvalid, r.Mode, r.Role, r.Data)
	case k == nil || r.Pair != k.pair:
		return b, fmt.Errorf("%w: pair %08x and key", ErrInvalid, r.Pair)
	}
	start := len(b)
	b = header(b, r.Type, r.Pair)
	b = binary.BigEndian.AppendUint64(b, r.Node)
	b = binary.BigEndian.AppendUint64(b, r.Counter)
	b = append(b, r.Nonce[:]...)
	b = binary.BigEndian.AppendUint64(b, r.Epoch)
	b = binary.BigEndian.AppendUint64(b, r.Generation)
	b = binary.BigEndian.AppendUint64(b, r.History)
	b = binary.BigEndian.AppendUint32(b, ttl)
	var flags uint8
	if r.PeerHeard {
		flags |= 1
	}
	b = append(b, byte(r.Mode), byte(r.Role), byte(r.Data), flags)
	b = append(b, make([]byte, AuthLen)...)
	k.seal(b[start:])
	return b, nil
}

// check verifies length, magic, version, authenticator and pair id, in
// that order: nothing is computed over a datagram of the wrong length.
func check(b []byte, want int, k *Key) error {
	switch {
	case len(b) < want:
		return fmt.Errorf("%w: %d bytes, want %d: %w", ErrLength, len(b), want, io.ErrUnexpectedEOF)
	case len(b) > want:
		return fmt.Errorf("%w: %d bytes, want %d", ErrLength, len(b), want)
	case b[0] != magic[0] || b[1] != magic[1]:
		return ErrMagic
	case b[2] != ProtocolVersion:
		return fmt.Errorf("%w: %d", ErrVersion, b[2])
	case !k.verify(b):
		return ErrAuth
	case binary.BigEndian.Uint32(b[4:]) != k.pair:
		return fmt.Errorf("%w: %08x", ErrPair, binary.BigEndian.Uint32(b[4:]))
	}
	return nil
}

// RequestPair returns the pair id of a request datagram, unauthenticated,
// so that the arbiter can pick the key to verify it with.
func RequestPair(b []byte) (uint32, error) {
	if len(b) != RequestLen {
		return 0, fmt.Errorf("%w: %d bytes, want %d", ErrLength, len(b), RequestLen)
	}
	if b[0] != magic[0] || b[1] != magic[1] {
		return 0, ErrMagic
	}
	return binary.BigEndian.Uint32(b[4:]), nil
}

// DecodeRequest checks and decodes a request datagram into r.
func DecodeRequest(b []byte, k *Key, r *Request) error {
	if err := check(b, RequestLen, k); err != nil {
		return err
	}
	v := Request{
		Type:       Type(b[3]),
		Pair:       binary.BigEndian.Uint32(b[4:]),
		Node:       binary.BigEndian.Uint64(b[8:]),
		Counter:    binary.BigEndian.Uint64(b[16:]),
		Epoch:      binary.BigEndian.Uint64(b[40:]),
		Generation: binary.BigEndian.Uint64(b[48:]),
		History:    binary.BigEndian.Uint64(b[56:]),
		TTL:        time.Duration(binary.BigEndian.Uint32(b[64:])) * time.Millisecond,
		Mode:       Mode(b[68]),
		Role:       Role(b[69]),
		Data:       Data(b[70]),
		PeerHeard:  b[71]&1 != 0,
	}
	copy(v.Nonce[:], b[24:40])
	switch {
	case v.Type != RequestAcquire && v.Type != RequestRelease:
		return fmt.Errorf("%w: request type %d", ErrMalformed, v.Type)
	case v.Mode == modeInvalid || v.Mode > ModeSpare || v.Role == roleInvalid || v.Role > RoleFault ||
		v.Data == dataInvalid || v.Data > DataInconsistent:
		return fmt.Errorf("%w: mode %d, role %d, data %d", ErrMalformed, b[68], b[69], b[70])
	case b[71]&^1 != 0:
		return fmt.Errorf("%w: flags %#x", ErrMalformed, b[71])
	}
	*r = v
	return nil
}

// Append appends the reply, authenticated with k, to b.
func (r Reply) Append(b []byte, k *Key) ([]byte, error) {
	ttl, ok1 := msOf(r.TTL, false)
	retry, ok2 := msOf(r.RetryAfter, true)
	switch {
	case r.Type != ReplyGrant && r.Type != ReplyDeny:
		return b, fmt.Errorf("%w: reply type %d", ErrInvalid, r.Type)
	case !ok1 || !ok2:
		return b, fmt.Errorf("%w: ttl %v, retry %v", ErrInvalid, r.TTL, r.RetryAfter)
	case r.Reason >= reasonMax || (r.Type == ReplyGrant) != (r.Reason == ReasonNone):
		return b, fmt.Errorf("%w: reason %s for type %d", ErrInvalid, r.Reason, r.Type)
	case k == nil || r.Pair != k.pair:
		return b, fmt.Errorf("%w: pair %08x and key", ErrInvalid, r.Pair)
	}
	start := len(b)
	b = header(b, r.Type, r.Pair)
	b = binary.BigEndian.AppendUint64(b, r.Node)
	b = append(b, r.Nonce[:]...)
	b = binary.BigEndian.AppendUint64(b, r.Holder)
	b = binary.BigEndian.AppendUint64(b, r.Epoch)
	b = binary.BigEndian.AppendUint64(b, r.Floor)
	b = binary.BigEndian.AppendUint32(b, ttl)
	b = binary.BigEndian.AppendUint32(b, retry)
	b = append(b, byte(r.Reason), 0, 0, 0)
	b = append(b, make([]byte, AuthLen)...)
	k.seal(b[start:])
	return b, nil
}

// DecodeReply checks and decodes a reply datagram into r.
func DecodeReply(b []byte, k *Key, r *Reply) error {
	if err := check(b, ReplyLen, k); err != nil {
		return err
	}
	v := Reply{
		Type:       Type(b[3]),
		Pair:       binary.BigEndian.Uint32(b[4:]),
		Node:       binary.BigEndian.Uint64(b[8:]),
		Holder:     binary.BigEndian.Uint64(b[32:]),
		Epoch:      binary.BigEndian.Uint64(b[40:]),
		Floor:      binary.BigEndian.Uint64(b[48:]),
		TTL:        time.Duration(binary.BigEndian.Uint32(b[56:])) * time.Millisecond,
		RetryAfter: time.Duration(binary.BigEndian.Uint32(b[60:])) * time.Millisecond,
		Reason:     Reason(b[64]),
	}
	copy(v.Nonce[:], b[16:32])
	switch {
	case v.Type != ReplyGrant && v.Type != ReplyDeny:
		return fmt.Errorf("%w: reply type %d", ErrMalformed, v.Type)
	case v.Reason >= reasonMax || (v.Type == ReplyGrant) != (v.Reason == ReasonNone):
		return fmt.Errorf("%w: reason %d for type %d", ErrMalformed, b[64], v.Type)
	case b[65] != 0 || b[66] != 0 || b[67] != 0:
		return fmt.Errorf("%w: reserved bytes set", ErrMalformed)
	}
	*r = v
	return nil
}
