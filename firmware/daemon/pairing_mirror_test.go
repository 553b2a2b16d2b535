package daemon

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pairguard/pairguard/drivers/nbd/nbdtest"
	"github.com/pairguard/pairguard/drivers/rawether/rawethertest"
	"github.com/pairguard/pairguard/firmware/config"
	"github.com/pairguard/pairguard/firmware/engine"
	"github.com/pairguard/pairguard/firmware/pairing"
	"github.com/pairguard/pairguard/sdcard"
)

// mirrorPairConfig is pairConfig with a periodic datastore on an image
// file, its mirror on the loopback (the main on 127.0.0.1, the spare on
// 127.0.0.2, both on port).
func mirrorPairConfig(t *testing.T, mode, dir, image string, port int) *config.Config {
	t.Helper()
	addr, peer := "127.0.0.1", "127.0.0.2"
	if mode == "spare" {
		addr, peer = peer, addr
	}
	src := fmt.Sprintf(`mode = %q
state-dir = %q
node-name = "%s-unit"
pair-window = "30s"
[lan1]
interface = "l1"
service-address = "192.168.5.10/24"
[lan2]
interface = "l2"
address = "%s/8"
peer-address = %q
[heartbeat]
interval = "20ms"
connection-wait-time = "300ms"
[hooks]
dir = %q
[datastore]
device = %q
port = %d
mode = "periodic"
interval = "300ms"
`, mode, dir, mode, addr, peer, filepath.Join(dir, "hooks"), image, port)
	c, err := config.Parse(mode+".toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func writeImage(t *testing.T, path string, random bool) {
	t.Helper()
	b := make([]byte, 1<<20)
	if random {
		rand.Read(b)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// Two taught-in units with a datastore: before the teach-in neither
// mirror gets anywhere (no identity); right after it, with neither daemon
// restarted, the main's running dialer and the spare's running listener
// use the identity keys the teach-in exchanged, and a round brings the
// spare in sync. A client presenting the identity derived from the pair
// key (what a provisioned node would present) is refused by the spare.
// Before the mirror followed the teach-in, the mirror of a node started
// unpaired never came up (no pair key at start) until both restarted.
func TestDaemonTeachInMirrorPinsLive(t *testing.T) {
	lan2, lan1 := rawethertest.NewHub(), rawethertest.NewHub()
	mdir, sdir := t.TempDir(), t.TempDir()
	mimg, simg := filepath.Join(mdir, "data.img"), filepath.Join(sdir, "data.img")
	writeImage(t, mimg, true)
	writeImage(t, simg, false)
	port := freePort(t)
	m := startPairNode(t, mirrorPairConfig(t, "main", mdir, mimg, port), lan2, lan1, 1)
	s := startPairNode(t, mirrorPairConfig(t, "spare", sdir, simg, port), lan2, lan1, 2)

	time.Sleep(time.Second) // rounds would have run by now
	if st := s.report(t).Mirror.State; st == "in-sync" {
		t.Fatalf("the spare's mirror is %s before the teach-in", st)
	}
	teachPair(t, m, s)
	waitForLong(t, "spare in sync after the teach-in", 15*time.Second, func() bool {
		r := s.report(t)
		return r.Mirror.State == "in-sync" && r.Role == "secondary"
	})
	a, _ := os.ReadFile(mimg)
	b, _ := os.ReadFile(simg)
	if !bytes.Equal(a, b) {
		t.Fatal("in sync, but the images differ")
	}
	for _, n := range []*node{m, s} {
		select {
		case err := <-n.done:
			t.Fatalf("a daemon stopped (restarted) during the teach-in: %v", err)
		default:
		}
	}

	// The pair key both derived is no longer what the mirror accepts.
	raw, err := os.ReadFile(filepath.Join(mdir, recordFile))
	if err != nil {
		t.Fatal(err)
	}
	var rec pairing.Record
	if err := rec.UnmarshalBinary(raw); err != nil {
		t.Fatal(err)
	}
	derived, err := sdcard.TLSConfig(rec.PairKey[:])
	if err != nil {
		t.Fatal(err)
	}
	derived.VerifyPeerCertificate = nil // accept the spare's certificate: the verdict is the spare's
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", fmt.Sprintf("127.0.0.2:%d", port), derived)
	if err == nil {
		c.SetDeadline(time.Now().Add(3 * time.Second))
		_, err = c.Read(make([]byte, 1))
		c.Close()
	}
	var remote *net.OpError
	if !errors.As(err, &remote) || remote.Op != "remote error" {
		t.Fatalf("a client with the pair key's derived identity: %v, want the spare's alert", err)
	}
}

// waitForLong is waitFor with its own limit.
func waitForLong(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(limit); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// The online write path follows the identity too: the primary's dialer
// and the secondary's listener, started before the teach-in, connect
// once both hold their keys, with no restart of either.
func TestOnlineMirrorIdentityLive(t *testing.T) {
	fake := nbdtest.New()
	addrA, addrB := freeAddr(t), freeAddr(t)
	a := newTestOnline(t, "a", fake, addrA, addrB, true)
	b := newTestOnline(t, "b", fake, addrB, addrA, false)
	a.tls, b.tls = sdcard.NewTLSIdentity(), sdcard.NewTLSIdentity()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := make(chan engine.Event, 1024)
	go drain(ctx, events)
	for _, m := range []*onlineMirror{a, b} {
		if _, err := m.Open(); err != nil {
			t.Fatal(err)
		}
		m.Start(ctx, events)
		defer m.Stop()
	}
	a.SetPrimary(true, true)
	time.Sleep(1500 * time.Millisecond) // the dialer has tried
	if st := a.Status().State; st == "in-sync" {
		t.Fatalf("in sync without identities: %s", st)
	}
	ka, kb := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32)), ed25519.NewKeyFromSeed(bytes.Repeat([]byte{2}, 32))
	if err := a.tls.SetKeys(ka, kb.Public().(ed25519.PublicKey)); err != nil {
		t.Fatal(err)
	}
	if err := b.tls.SetKeys(kb, ka.Public().(ed25519.PublicKey)); err != nil {
		t.Fatal(err)
	}
	waitState(t, a, "in-sync")
}
