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
	"time"
)

// ErrWrongPeer is returned when the peer's certificate is not the one
// derived from the pair key: a node of another pair or a wrong key.
var ErrWrongPeer = errors.New("sdcard: peer key does not match the pair key")

const tlsKeyInfo = "pairguard mirror tls ed25519 v1"

// TLSConfig returns the TLS 1.3 configuration both nodes use. The pair
// key gives, through HKDF-SHA256, one ed25519 key that both nodes share;
// each presents a self-signed certificate for it and accepts only a peer
// whose certificate carries the same public key. Go's crypto/tls has no
// external PSK, so this is how the pair key authenticates both ends.
// Validity runs from 1970 to 9999 because an appliance may boot before
// its clock is set.
func TLSConfig(pairKey []byte) (*tls.Config, error) {
	if len(pairKey) < 16 {
		return nil, errors.New("sdcard: pair key shorter than 16 bytes")
	}
	seed, err := hkdf.Key(sha256.New, pairKey, nil, tlsKeyInfo, ed25519.SeedSize)
	if err != nil {
		return nil, fmt.Errorf("sdcard: derive key: %w", err)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	pub := priv.Public().(ed25519.PublicKey)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "pairguard-mirror"},
		NotBefore:             time.Unix(0, 0),
		NotAfter:              time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(nil, tmpl, tmpl, pub, priv)
	if err != nil {
		return nil, fmt.Errorf("sdcard: certificate: %w", err)
	}
	verify := func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) != 1 {
			return ErrWrongPeer
		}
		c, err := x509.ParseCertificate(raw[0])
		if err != nil {
			return fmt.Errorf("%w: %w", ErrWrongPeer, err)
		}
		k, ok := c.PublicKey.(ed25519.PublicKey)
		if !ok || !bytes.Equal(k, pub) {
			return ErrWrongPeer
		}
		return c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature)
	}
	return &tls.Config{
		MinVersion:            tls.VersionTLS13,
		Certificates:          []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: priv}},
		ClientAuth:            tls.RequireAnyClientCert,
		InsecureSkipVerify:    true, // chains are not used: VerifyPeerCertificate pins the key
		VerifyPeerCertificate: verify,
		ServerName:            "pairguard-mirror",
	}, nil
}
