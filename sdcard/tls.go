package sdcard

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"sync/atomic"
	"time"
)

// ErrWrongPeer is returned when the peer's certificate does not carry the
// key this node pins: a node of another pair, a wrong pair key, or a unit
// that was not the one taught in.
var ErrWrongPeer = errors.New("sdcard: peer key does not match the pinned key")

// ErrNoIdentity: the node has no mirror identity yet (a taught-in node
// before its teach-in); it neither presents nor accepts anything.
var ErrNoIdentity = errors.New("sdcard: no mirror identity yet (the node is not paired)")

const tlsKeyInfo = "pairguard mirror tls ed25519 v1"

// The mirror's TLS (the periodic rounds and the online stream alike) is
// TLS 1.3 with both ends authenticated by one ed25519 key each and no
// certificate chains: each node presents a self-signed certificate for its
// own key and accepts exactly one peer key, the pin.
//
//   - A provisioned pair (pair-key in both configs) derives one key from
//     the pair key through HKDF-SHA256; both nodes present it and pin it
//     (Go's crypto/tls has no external PSK, so this is how the pair key
//     authenticates both ends).
//   - A taught-in pair uses each node's own identity key, whose public half
//     the teach-in exchanged and both persisted in their pair records: a
//     node presents its own and pins the peer's. The pair key plays no part,
//     so a node of the same pair key that is not the taught-in unit (or
//     anyone presenting the derived key) is refused.
//
// Validity runs from 1970 to 9999 because an appliance may boot before its
// clock is set. Session tickets are off: a resumed session would skip the
// pin check.

// TLSConfig returns the static TLS 1.3 configuration of a provisioned pair:
// the key derived from pairKey, presented and pinned by both nodes.
func TLSConfig(pairKey []byte) (*tls.Config, error) {
	p, err := derivedPin(pairKey)
	if err != nil {
		return nil, err
	}
	return p.conf, nil
}

// TLSIdentity is a node's mirror identity that may change while the node
// runs: Config returns one *tls.Config whose callbacks read the current
// identity at each handshake, so a teach-in that completes while the
// mirror's listener and dialer run takes effect at their next handshake,
// with no restart. Connections already established are not touched. The
// zero value and NewTLSIdentity have no identity: every handshake fails
// with ErrNoIdentity and Ready reports false. Safe for concurrent use.
type TLSIdentity struct {
	cur  atomic.Pointer[tlsPin]
	conf *tls.Config
}

// tlsPin is one identity: the certificate this node presents, the peer
// key it accepts, and the static server configuration of both.
type tlsPin struct {
	cert tls.Certificate
	peer ed25519.PublicKey
	conf *tls.Config
}

// NewTLSIdentity returns an identity holder with no identity yet.
func NewTLSIdentity() *TLSIdentity {
	t := &TLSIdentity{}
	t.conf = &tls.Config{
		MinVersion:             tls.VersionTLS13,
		ClientAuth:             tls.RequireAnyClientCert,
		InsecureSkipVerify:     true, // chains are not used: VerifyPeerCertificate pins the key
		ServerName:             "pairguard-mirror",
		SessionTicketsDisabled: true,
		// Server side: the whole handshake runs on the identity current
		// when the client's hello arrives.
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			if p := t.cur.Load(); p != nil {
				return p.conf, nil
			}
			return nil, ErrNoIdentity
		},
		// Client side: the pin is checked before this node's certificate
		// is asked for (TLS 1.3 order), each against the current identity.
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			p := t.cur.Load()
			if p == nil {
				return ErrNoIdentity
			}
			return verifyPin(raw, p.peer)
		},
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if p := t.cur.Load(); p != nil {
				return &p.cert, nil
			}
			return nil, ErrNoIdentity
		},
	}
	return t
}

// Config returns the configuration for tls.Server and tls.Client; it is
// the same pointer for the holder's life.
func (t *TLSIdentity) Config() *tls.Config { return t.conf }

// Ready reports whether the node has an identity (a dialer waits until
// it has).
func (t *TLSIdentity) Ready() bool { return t.cur.Load() != nil }

// Peer returns the pinned peer key (nil without an identity).
func (t *TLSIdentity) Peer() ed25519.PublicKey {
	if p := t.cur.Load(); p != nil {
		return p.peer
	}
	return nil
}

// SetPairKey switches to the identity derived from a provisioned pair key.
func (t *TLSIdentity) SetPairKey(pairKey []byte) error {
	p, err := derivedPin(pairKey)
	if err != nil {
		return err
	}
	t.cur.Store(p)
	return nil
}

// SetKeys switches to a taught-in identity: own is this node's identity
// key, peer the public key of the unit it was taught in with.
func (t *TLSIdentity) SetKeys(own ed25519.PrivateKey, peer ed25519.PublicKey) error {
	if len(own) != ed25519.PrivateKeySize || len(peer) != ed25519.PublicKeySize {
		return errors.New("sdcard: identity: bad key length")
	}
	p, err := newPin(own, peer)
	if err != nil {
		return err
	}
	t.cur.Store(p)
	return nil
}

// Clear removes the identity: handshakes fail until the next Set.
func (t *TLSIdentity) Clear() { t.cur.Store(nil) }

// derivedPin is the identity of a provisioned pair.
func derivedPin(pairKey []byte) (*tlsPin, error) {
	if len(pairKey) < 16 {
		return nil, errors.New("sdcard: pair key shorter than 16 bytes")
	}
	seed, err := hkdf.Key(sha256.New, pairKey, nil, tlsKeyInfo, ed25519.SeedSize)
	if err != nil {
		return nil, fmt.Errorf("sdcard: derive key: %w", err)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	return newPin(priv, priv.Public().(ed25519.PublicKey))
}

// newPin makes the certificate of own and the static configuration that
// presents it and accepts only peer.
func newPin(own ed25519.PrivateKey, peer ed25519.PublicKey) (*tlsPin, error) {
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "pairguard-mirror"},
		NotBefore:             time.Unix(0, 0),
		NotAfter:              time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(nil, tmpl, tmpl, own.Public(), own)
	if err != nil {
		return nil, fmt.Errorf("sdcard: certificate: %w", err)
	}
	p := &tlsPin{cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: own}, peer: bytes.Clone(peer)}
	p.conf = &tls.Config{
		MinVersion:             tls.VersionTLS13,
		Certificates:           []tls.Certificate{p.cert},
		ClientAuth:             tls.RequireAnyClientCert,
		InsecureSkipVerify:     true, // chains are not used: VerifyPeerCertificate pins the key
		VerifyPeerCertificate:  func(raw [][]byte, _ [][]*x509.Certificate) error { return verifyPin(raw, p.peer) },
		ServerName:             "pairguard-mirror",
		SessionTicketsDisabled: true,
	}
	return p, nil
}

// verifyPin accepts exactly one self-signed certificate for the key pin.
func verifyPin(raw [][]byte, pin ed25519.PublicKey) error {
	if len(raw) != 1 {
		return ErrWrongPeer
	}
	c, err := x509.ParseCertificate(raw[0])
	if err != nil {
		return fmt.Errorf("%w: %w", ErrWrongPeer, err)
	}
	k, ok := c.PublicKey.(ed25519.PublicKey)
	if !ok || !bytes.Equal(k, pin) {
		return ErrWrongPeer
	}
	return c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature)
}
