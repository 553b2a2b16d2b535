package sdcard

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"net"
	"testing"
	"time"
)

// tlsHandshake runs one handshake over loopback and returns the server's
// and the client's error (each also covers one byte of application data,
// so a client whose certificate the server refused fails too).
func tlsHandshake(t *testing.T, server, client *tls.Config) (serr, cerr error) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	errc := make(chan error, 1)
	go func() {
		a, err := l.Accept()
		if err != nil {
			errc <- err
			return
		}
		defer a.Close()
		a.SetDeadline(time.Now().Add(5 * time.Second))
		s := tls.Server(a, server)
		err = s.Handshake()
		if err == nil {
			_, err = s.Read(make([]byte, 1))
		}
		errc <- err
	}()
	b, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	b.SetDeadline(time.Now().Add(5 * time.Second))
	c := tls.Client(b, client)
	cerr = c.Handshake()
	if cerr == nil && c.ConnectionState().Version != tls.VersionTLS13 {
		cerr = errors.New("not TLS 1.3")
	}
	if cerr == nil {
		_, cerr = c.Write([]byte{1})
		if cerr == nil {
			// The server's verdict: an orderly end, or its alert.
			var remote *net.OpError
			if _, err := c.Read(make([]byte, 1)); errors.As(err, &remote) && remote.Op == "remote error" {
				cerr = err
			}
		}
	}
	if cerr != nil {
		b.Close()
	}
	return <-errc, cerr
}

func newKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func pub(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

// A taught-in pair: each presents its own key and pins the other's. A
// peer presenting the key derived from a pair key (even this pair's), or
// a third unit's key, is refused on either side.
func TestTLSIdentityPinsTaughtInPeer(t *testing.T) {
	mainKey, spareKey, thirdKey := newKey(t), newKey(t), newKey(t)
	m, s := NewTLSIdentity(), NewTLSIdentity()
	if err := m.SetKeys(mainKey, pub(spareKey)); err != nil {
		t.Fatal(err)
	}
	if err := s.SetKeys(spareKey, pub(mainKey)); err != nil {
		t.Fatal(err)
	}
	if se, ce := tlsHandshake(t, s.Config(), m.Config()); se != nil || ce != nil {
		t.Fatalf("taught-in pair: server %v, client %v", se, ce)
	}
	if se, ce := tlsHandshake(t, m.Config(), s.Config()); se != nil || ce != nil {
		t.Fatalf("taught-in pair, other direction: server %v, client %v", se, ce)
	}

	derived, err := TLSConfig(testKey)
	if err != nil {
		t.Fatal(err)
	}
	third := NewTLSIdentity()
	if err := third.SetKeys(thirdKey, pub(mainKey)); err != nil { // it even pins the main
		t.Fatal(err)
	}
	for name, c := range map[string]*tls.Config{"derived from a pair key": derived, "a third unit": third.Config()} {
		// As a client it accepts any server, so that the verdict is the main's.
		blind := c.Clone()
		blind.VerifyPeerCertificate = nil
		if se, _ := tlsHandshake(t, m.Config(), blind); !errors.Is(se, ErrWrongPeer) {
			t.Errorf("%s as client: the main's listener says %v, want ErrWrongPeer", name, se)
		}
		if _, ce := tlsHandshake(t, c, m.Config()); !errors.Is(ce, ErrWrongPeer) {
			t.Errorf("%s as server: the main's dialer says %v, want ErrWrongPeer", name, ce)
		}
	}
}

// The holder swaps live: the same *tls.Config refuses everything before
// an identity is set, uses the derived identity after SetPairKey and the
// taught-in one after SetKeys, and nothing after Clear.
func TestTLSIdentitySwapsLive(t *testing.T) {
	m, s := NewTLSIdentity(), NewTLSIdentity()
	conf := m.Config()
	if m.Ready() {
		t.Fatal("ready without an identity")
	}
	if err := s.SetPairKey(testKey); err != nil {
		t.Fatal(err)
	}
	if se, _ := tlsHandshake(t, conf, s.Config()); !errors.Is(se, ErrNoIdentity) {
		t.Fatalf("no identity, as server: %v", se)
	}
	if _, ce := tlsHandshake(t, s.Config(), conf); !errors.Is(ce, ErrNoIdentity) {
		t.Fatalf("no identity, as client: %v", ce)
	}

	if err := m.SetPairKey(testKey); err != nil {
		t.Fatal(err)
	}
	if se, ce := tlsHandshake(t, conf, s.Config()); se != nil || ce != nil {
		t.Fatalf("derived identities: server %v, client %v", se, ce)
	}
	if m.Config() != conf || !m.Ready() {
		t.Fatal("the configuration changed pointer or is not ready")
	}

	// The teach-in: both switch to their own keys; the derived identity
	// of the same pair key is refused from then on.
	mk, sk := newKey(t), newKey(t)
	if err := m.SetKeys(mk, pub(sk)); err != nil {
		t.Fatal(err)
	}
	if _, ce := tlsHandshake(t, s.Config(), conf); !errors.Is(ce, ErrWrongPeer) {
		t.Fatalf("the derived identity after the teach-in: %v, want ErrWrongPeer", ce)
	}
	if err := s.SetKeys(sk, pub(mk)); err != nil {
		t.Fatal(err)
	}
	if se, ce := tlsHandshake(t, conf, s.Config()); se != nil || ce != nil {
		t.Fatalf("taught-in identities: server %v, client %v", se, ce)
	}
	if se, ce := tlsHandshake(t, s.Config(), conf); se != nil || ce != nil {
		t.Fatalf("taught-in identities, other direction: server %v, client %v", se, ce)
	}
	if !pub(sk).Equal(m.Peer()) {
		t.Fatal("Peer is not the pinned key")
	}

	m.Clear()
	if se, _ := tlsHandshake(t, conf, s.Config()); !errors.Is(se, ErrNoIdentity) {
		t.Fatalf("after Clear: %v", se)
	}
	if err := m.SetKeys(mk[:10], pub(sk)); err == nil {
		t.Fatal("a short key accepted")
	}
}
