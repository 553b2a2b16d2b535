package pairing

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/pairguard/pairguard/firmware/pairing/cpace"
)

// Kind is the kind of a pairing message.
type Kind uint8

const (
	kindInvalid Kind = iota // invalid
	// KindHello: spare → broadcast. "I am node From, joining with nonce S."
	KindHello // hello
	// KindShare: main → spare. The main's CPace message MSGa (share, identity, settings).
	KindShare // share
	// KindReply: spare → main. The spare's CPace message MSGb and its confirmation tag.
	KindReply // reply
	// KindFinish: main → spare. The main's confirmation tag and check-number nonce.
	KindFinish // finish
	// KindAccept: either way, after the operator's approval; authenticated.
	KindAccept // accept
	// KindReject: either way, the approval was refused or timed out; authenticated.
	KindReject // reject
	// KindAbort: either way, the exchange failed before confirmation; not authenticated.
	KindAbort // abort
)

// Reason says why an exchange or a pairing ended; it travels in Reject and
// Abort and is the reason of the state change.
type Reason uint8

const (
	reasonInvalid Reason = iota // invalid
	// ReasonWrongCode: the main could not confirm the spare's tag.
	ReasonWrongCode // wrong-code
	// ReasonBadMessage: a share did not decode or its AD was malformed.
	ReasonBadMessage // bad-message
	// ReasonRejected: the operator refused the peer shown in pending.
	ReasonRejected // rejected
	// ReasonTimeout: the window, the join or an exchange ran out of time.
	ReasonTimeout // timeout
	// ReasonCancelled: the operator cancelled the window or the join.
	ReasonCancelled // cancelled
	// ReasonConfirmFailed: the spare could not confirm the main's tag or nonce.
	ReasonConfirmFailed // confirmation-failed
	// ReasonTooManyAttempts: the window started MaxExchanges exchanges.
	ReasonTooManyAttempts // too-many-attempts
	// ReasonPersistFailed: the record could not be written.
	ReasonPersistFailed // persist-failed
)

// lastReason is the highest defined reason; a message with a higher one
// is malformed.
const lastReason = ReasonPersistFailed

// Version is the version of the pairing messages.
const Version = 1

// NonceLen is the length of each side's nonce; sid = nonce S || nonce M.
const NonceLen = 16

// HeaderLen is the length of the header every message starts with.
const HeaderLen = 2 + 8 + 8 + 2*NonceLen

// MaxLen bounds a message, to fit a PAIR-HELLO frame on the failover line.
const MaxLen = 1400

// authTagLen is the length of the tag of Accept and Reject (HMAC-SHA256).
const authTagLen = 32

var (
	// ErrMalformed: the message is not one this version writes.
	ErrMalformed = errors.New("pairing: malformed message")
	// ErrVersion: the message is of another version.
	ErrVersion = errors.New("pairing: unknown message version")
)

// Message is a pairing message, the payload of a PAIR-HELLO frame.
//
//	 0       1       2               10              18              34              50
//	+-------+-------+---------------+---------------+---------------+---------------+--------
//	|version| kind  | from node id  | to node id    | nonce S       | nonce M       | body…
//	+-------+-------+---------------+---------------+---------------+---------------+--------
//
// Node ids are big-endian; To is 0 in a Hello (broadcast), nonce M is zero
// until the main has chosen it. The body depends on the kind:
//
//	hello   (none)
//	share   CPace MSGa = lv(Ya) lv(ADa), 34..MaxLen-50 bytes
//	reply   tag (64) | CPace MSGb = lv(Yb) lv(ADb)
//	finish  tag (64) | R (32), the nonce whose SHA-256 ADa committed to
//	accept  tag (32)
//	reject  reason (1) | tag (32)
//	abort   reason (1)
//
// AD (ADa, ADb) = lv(node name) lv(software version) lv(ed25519 key)
// lv(settings) lv(SHA-256(R)), settings and commitment empty in the spare's.
type Message struct {
	Kind           Kind
	From, To       uint64
	NonceS, NonceM [NonceLen]byte
	Share          []byte // share and reply: the CPace message
	Tag            []byte // reply, finish: key-confirmation tag; accept, reject: session tag
	Reveal         []byte // finish: the main's check-number nonce R
	Reason         Reason // reject, abort
}

// shape is the body layout of a kind.
type shape struct {
	reason bool // a reason byte
	tag    int  // tag length
	reveal int  // reveal length, after the tag
	share  bool // a CPace message fills the rest
}

func (s shape) fixed() int {
	n := HeaderLen + s.tag + s.reveal
	if s.reason {
		n++
	}
	return n
}

var shapes = [...]shape{
	KindHello:  {},
	KindShare:  {share: true},
	KindReply:  {tag: cpace.TagLen, share: true},
	KindFinish: {tag: cpace.TagLen, reveal: revealLen},
	KindAccept: {tag: authTagLen},
	KindReject: {reason: true, tag: authTagLen},
	KindAbort:  {reason: true},
}

func shapeOf(k Kind) (shape, bool) {
	if k == kindInvalid || int(k) >= len(shapes) {
		return shape{}, false
	}
	return shapes[k], true
}

// minShareLen: a CPace message holds at least lv(Y) and an empty lv(AD).
const minShareLen = 1 + cpace.ShareLen + 1

// validShare reports whether b is lv(Y) lv(AD) with a share of the group's length.
func validShare(b []byte) bool {
	_, _, err := cpace.ParseMessage(b)
	return err == nil
}

// AppendBinary appends the encoded message to b.
func (m *Message) AppendBinary(b []byte) ([]byte, error) {
	sh, ok := shapeOf(m.Kind)
	switch {
	case !ok:
		return b, fmt.Errorf("%w: kind %d", ErrMalformed, m.Kind)
	case len(m.Tag) != sh.tag:
		return b, fmt.Errorf("%w: %s tag of %d bytes, want %d", ErrMalformed, m.Kind, len(m.Tag), sh.tag)
	case len(m.Reveal) != sh.reveal:
		return b, fmt.Errorf("%w: %s reveal of %d bytes, want %d", ErrMalformed, m.Kind, len(m.Reveal), sh.reveal)
	case sh.share != (len(m.Share) > 0):
		return b, fmt.Errorf("%w: %s with a share of %d bytes", ErrMalformed, m.Kind, len(m.Share))
	case sh.share && !validShare(m.Share):
		return b, fmt.Errorf("%w: CPace message of %d bytes", ErrMalformed, len(m.Share))
	case sh.reason != (m.Reason != reasonInvalid) || m.Reason > lastReason:
		return b, fmt.Errorf("%w: %s with reason %v", ErrMalformed, m.Kind, m.Reason)
	}
	if n := sh.fixed() + len(m.Share); n > MaxLen {
		return b, fmt.Errorf("%w: %d bytes, at most %d", ErrMalformed, n, MaxLen)
	}
	b = append(b, Version, byte(m.Kind))
	b = binary.BigEndian.AppendUint64(b, m.From)
	b = binary.BigEndian.AppendUint64(b, m.To)
	b = append(b, m.NonceS[:]...)
	b = append(b, m.NonceM[:]...)
	if sh.reason {
		b = append(b, byte(m.Reason))
	}
	b = append(b, m.Tag...)
	b = append(b, m.Reveal...)
	return append(b, m.Share...), nil
}

// MarshalBinary encodes the message.
func (m *Message) MarshalBinary() ([]byte, error) {
	return m.AppendBinary(make([]byte, 0, HeaderLen+cpace.TagLen+256))
}

// UnmarshalBinary decodes a message. Lengths are checked before any field
// is read: a message shorter than its kind needs is io.ErrUnexpectedEOF,
// one longer than MaxLen, with bytes its kind does not have or with a
// CPace message whose length prefixes do not add up is ErrMalformed. Tag,
// Reveal and Share are copied (one allocation), so b may be reused.
func (m *Message) UnmarshalBinary(b []byte) error {
	if len(b) < 2 {
		return io.ErrUnexpectedEOF
	}
	if b[0] != Version {
		return fmt.Errorf("%w: %d", ErrVersion, b[0])
	}
	kind := Kind(b[1])
	sh, ok := shapeOf(kind)
	if !ok {
		return fmt.Errorf("%w: kind %d", ErrMalformed, b[1])
	}
	fixed := sh.fixed()
	switch {
	case len(b) > MaxLen:
		return fmt.Errorf("%w: %d bytes, at most %d", ErrMalformed, len(b), MaxLen)
	case len(b) < fixed:
		return io.ErrUnexpectedEOF
	case sh.share && len(b) < fixed+minShareLen:
		return io.ErrUnexpectedEOF
	case !sh.share && len(b) != fixed:
		return fmt.Errorf("%w: %s of %d bytes, want %d", ErrMalformed, kind, len(b), fixed)
	case sh.share && !validShare(b[fixed:]):
		return fmt.Errorf("%w: CPace message", ErrMalformed)
	}
	out := Message{Kind: kind}
	out.From = binary.BigEndian.Uint64(b[2:])
	out.To = binary.BigEndian.Uint64(b[10:])
	copy(out.NonceS[:], b[18:34])
	copy(out.NonceM[:], b[34:50])
	rest := b[HeaderLen:]
	if sh.reason {
		out.Reason = Reason(rest[0])
		if out.Reason == reasonInvalid || out.Reason > lastReason {
			return fmt.Errorf("%w: reason %d", ErrMalformed, rest[0])
		}
		rest = rest[1:]
	}
	if len(rest) > 0 {
		body := bytes.Clone(rest)
		if sh.tag > 0 {
			out.Tag = body[:sh.tag:sh.tag]
		}
		if sh.reveal > 0 {
			out.Reveal = body[sh.tag : sh.tag+sh.reveal : sh.tag+sh.reveal]
		}
		if sh.share {
			out.Share = body[sh.tag+sh.reveal:]
		}
	}
	*m = out
	return nil
}

// authInput is what the tag of Accept and Reject covers: the header and
// the reason byte.
func (m *Message) authInput() []byte {
	b := make([]byte, 0, HeaderLen+1)
	b = append(b, Version, byte(m.Kind))
	b = binary.BigEndian.AppendUint64(b, m.From)
	b = binary.BigEndian.AppendUint64(b, m.To)
	b = append(b, m.NonceS[:]...)
	b = append(b, m.NonceM[:]...)
	return append(b, byte(m.Reason))
}
