// Package cpace implements the CPace balanced password-authenticated key
// exchange of draft-irtf-cfrg-cpace, cipher suite CPACE-RISTR255-SHA512,
// in the initiator-responder setting, with the explicit key confirmation the
// draft's security considerations describe.
//
// Both parties derive a secret generator g from the password-related string
// (PRS), the channel identifier (CI) and the session id (sid):
//
//	gen_str = prefix_free_cat(DSI, PRS, zero_bytes(len_zpad), CI, sid)
//	g       = ristretto255.one_way_map(SHA-512(gen_str))
//
// Each samples a fresh scalar y, sends MSG = prefix_free_cat(Y = y·g, AD)
// and computes K = y·Y_peer, refusing a share that does not decode or a K
// that is the identity. The intermediate session key is
//
//	ISK = SHA-512(prefix_free_cat(DSI || "_ISK", sid, K) || MSGa || MSGb)
//
// with MSGa the initiator's message. Key confirmation: mac_key =
// SHA-512("CPaceMac" || ISK), and each party sends Tag(MSG it sent) =
// HMAC-SHA512(mac_key, MSG); the receiver checks the peer's tag against the
// peer's message before it trusts the ISK.
//
// The package knows nothing of Pairguard; package pairing binds PRS, CI and
// sid to the one-time code, the node ids and fresh nonces of both units.
package cpace

import (
	"crypto/hmac"
	"crypto/sha512"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"

	"github.com/gtank/ristretto255"
)

// DSI is the domain separation identifier of the ristretto255 group.
const DSI = "CPaceRistretto255"

// ShareLen is the length of an encoded group element (Ya, Yb).
const ShareLen = 32

// TagLen is the length of a key-confirmation tag (HMAC-SHA512).
const TagLen = sha512.Size

// ISKLen is the length of the intermediate session key.
const ISKLen = sha512.Size

// sInBytes is the input block size of SHA-512.
const sInBytes = 128

var (
	// ErrMessage: a CPace message is not a prefix-free encoding of a share and
	// associated data.
	ErrMessage = errors.New("cpace: malformed message")
	// ErrShare: the peer's share does not decode to a group element, or the
	// shared point is the identity. The exchange must be aborted.
	ErrShare = errors.New("cpace: invalid share")
)

// AppendLen appends the LEB128 encoding of n to b (prepend_len's prefix).
func AppendLen(b []byte, n int) []byte {
	for {
		if n < 0x80 {
			return append(b, byte(n))
		}
		b = append(b, byte(n&0x7f|0x80))
		n >>= 7
	}
}

// PrefixFreeCat is the draft's prefix_free_cat: each part with its LEB128
// length in front.
func PrefixFreeCat(parts ...[]byte) []byte {
	n := 0
	for _, p := range parts {
		n += len(p) + 3
	}
	b := make([]byte, 0, n)
	for _, p := range parts {
		b = AppendLen(b, len(p))
		b = append(b, p...)
	}
	return b
}

// SplitPrefixFree parses b as the prefix-free concatenation of exactly n
// parts that consume all of b. The parts alias b. A length that runs past
// the end, an over-long LEB128 length or trailing bytes give ErrMessage.
func SplitPrefixFree(b []byte, n int) ([][]byte, error) {
	parts := make([][]byte, 0, n)
	for range n {
		l, used, ok := readLen(b)
		if !ok || l > len(b)-used {
			return nil, ErrMessage
		}
		parts = append(parts, b[used:used+l])
		b = b[used+l:]
	}
	if len(b) != 0 {
		return nil, ErrMessage
	}
	return parts, nil
}

// readLen reads a LEB128 length of at most three bytes (2^21-1), far more
// than any message here can hold.
func readLen(b []byte) (n, used int, ok bool) {
	for i := 0; i < 3 && i < len(b); i++ {
		n |= int(b[i]&0x7f) << (7 * i)
		if b[i]&0x80 == 0 {
			return n, i + 1, true
		}
	}
	return 0, 0, false
}

// GeneratorString is the draft's generator_string for SHA-512.
func GeneratorString(prs, ci, sid []byte) []byte {
	zpad := sInBytes - 1 - (len(prs) + lenOfLen(len(prs))) - (len(DSI) + lenOfLen(len(DSI)))
	zpad = max(zpad, 0)
	return PrefixFreeCat([]byte(DSI), prs, make([]byte, zpad), ci, sid)
}

func lenOfLen(n int) int { return len(AppendLen(nil, n)) }

// Generator returns the secret generator g for PRS, CI and sid.
func Generator(prs, ci, sid []byte) *ristretto255.Element {
	h := sha512.Sum512(GeneratorString(prs, ci, sid))
	return ristretto255.NewElement().FromUniformBytes(h[:])
}

// Party is one side of one CPace exchange. A Party must not be reused: its
// scalar is fresh for every exchange.
type Party struct {
	initiator bool
	sid       []byte
	y         *ristretto255.Scalar
	msg       []byte // the message this party sends: prefix_free_cat(Y, AD)
}

// New starts an exchange: it samples a scalar from rand (64 bytes reduced
// modulo the group order) and computes this party's message
// prefix_free_cat(y·g, ad). The initiator's message is MSGa.
func New(rand io.Reader, initiator bool, prs, ci, sid, ad []byte) (*Party, error) {
	var buf [64]byte
	if _, err := io.ReadFull(rand, buf[:]); err != nil {
		return nil, fmt.Errorf("cpace: random scalar: %w", err)
	}
	y := ristretto255.NewScalar().FromUniformBytes(buf[:])
	clear(buf[:])
	return newWithScalar(y, initiator, prs, ci, sid, ad), nil
}

func newWithScalar(y *ristretto255.Scalar, initiator bool, prs, ci, sid, ad []byte) *Party {
	g := Generator(prs, ci, sid)
	Y := ristretto255.NewElement().ScalarMult(y, g)
	return &Party{
		initiator: initiator,
		sid:       append([]byte(nil), sid...),
		y:         y,
		msg:       PrefixFreeCat(Y.Encode(nil), ad),
	}
}

// Message returns the message to send to the peer (MSGa or MSGb).
func (p *Party) Message() []byte { return p.msg }

// ParseMessage splits a CPace message into its share and associated data.
// The results alias msg; nothing is allocated.
func ParseMessage(msg []byte) (share, ad []byte, err error) {
	l, used, ok := readLen(msg)
	if !ok || l != ShareLen || len(msg)-used < l {
		return nil, nil, ErrMessage
	}
	share, rest := msg[used:used+l], msg[used+l:]
	l, used, ok = readLen(rest)
	if !ok || l != len(rest)-used {
		return nil, nil, ErrMessage
	}
	return share, rest[used:], nil
}

// Finish computes the ISK from the peer's message. It fails with
// ErrMessage or ErrShare, after which the exchange must be abandoned.
func (p *Party) Finish(peer []byte) ([]byte, error) {
	share, _, err := ParseMessage(peer)
	if err != nil {
		return nil, err
	}
	k, err := scalarMultVfy(p.y, share)
	if err != nil {
		return nil, err
	}
	msgA, msgB := p.msg, peer
	if !p.initiator {
		msgA, msgB = peer, p.msg
	}
	return isk(p.sid, k, msgA, msgB), nil
}

// scalarMultVfy is G.scalar_mult_vfy: decode X, multiply, refuse the identity.
func scalarMultVfy(y *ristretto255.Scalar, x []byte) ([]byte, error) {
	X := ristretto255.NewElement()
	if err := X.Decode(x); err != nil {
		return nil, ErrShare
	}
	K := ristretto255.NewElement().ScalarMult(y, X)
	if K.Equal(ristretto255.NewElement()) == 1 {
		return nil, ErrShare
	}
	return K.Encode(nil), nil
}

func isk(sid, k, msgA, msgB []byte) []byte {
	h := sha512.New()
	h.Write(PrefixFreeCat([]byte(DSI+"_ISK"), sid, k))
	h.Write(msgA)
	h.Write(msgB)
	return h.Sum(nil)
}

// Tag is the key-confirmation tag over msg, the message its sender sent:
// HMAC-SHA512(SHA-512("CPaceMac" || ISK), msg).
func Tag(isk, msg []byte) []byte {
	k := sha512.Sum512(append([]byte("CPaceMac"), isk...))
	m := hmac.New(sha512.New, k[:])
	m.Write(msg)
	return m.Sum(nil)
}

// CheckTag reports in constant time whether tag is Tag(isk, msg).
func CheckTag(isk, msg, tag []byte) bool {
	return subtle.ConstantTimeCompare(Tag(isk, msg), tag) == 1
}
