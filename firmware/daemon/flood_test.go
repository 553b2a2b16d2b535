package daemon

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pairguard/pairguard/drivers/rawether/rawethertest"
	"github.com/pairguard/pairguard/firmware/config"
	"github.com/pairguard/pairguard/sdcard"
)

// freePort returns a TCP port free on the loopback now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Connections that fail the mirror's TLS handshake in a burst do not wipe
// the logbook: the real entries stay and the flood is summed up. Before,
// each failure was one persistent entry: 1500 of them replaced a
// 1000-entry logbook (here 300 and 100).
func TestMirrorHandshakeFloodKeepsLogbook(t *testing.T) {
	dir := t.TempDir()
	image := filepath.Join(dir, "data.img")
	if err := os.WriteFile(image, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(image, 1<<20); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	src := fmt.Sprintf(`mode = "main"
state-dir = %q
pair-key = "daemon-test-pair-key-0001"
[lan1]
interface = "l1"
service-address = "192.168.5.10/24"
[lan2]
interface = "l2"
address = "127.0.0.2/8"
peer-address = "127.0.0.1"
[heartbeat]
interval = "20ms"
connection-wait-time = "300ms"
[hooks]
dir = %q
[logbook]
entries = 100
[datastore]
device = %q
port = %d
`, dir, filepath.Join(dir, "hooks"), image, port)
	cfg, err := config.Parse("flood.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	lan2, lan1 := rawethertest.NewHub(), rawethertest.NewHub()
	m := startNodeConfig(t, cfg, lan2, lan1, 1, nil)
	waitFor(t, "main primary", func() bool { return m.report(t).Role == "primary" })
	before := m.d.book.Last(0)
	if len(before) == 0 {
		t.Fatal("no entries before the flood")
	}

	// Another pair's mirror: the certificate of another key.
	other, err := sdcard.TLSConfig([]byte("another-pair-key-0000000"))
	if err != nil {
		t.Fatal(err)
	}
	other.InsecureSkipVerify, other.VerifyPeerCertificate = true, nil
	var wg sync.WaitGroup
	addr := fmt.Sprintf("127.0.0.2:%d", port) // the higher address listens
	sem := make(chan struct{}, 50)
	for range 300 {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			d := &net.Dialer{Timeout: 2 * time.Second}
			c, err := tls.DialWithDialer(d, "tcp", addr, other)
			if err == nil {
				c.SetDeadline(time.Now().Add(2 * time.Second))
				c.Read(make([]byte, 64)) // the server's verdict
				c.Close()
			}
		})
	}
	wg.Wait()
	time.Sleep(500 * time.Millisecond) // the mirror's events reach the logbook
	after := m.d.book.Last(0)
	rejected := 0
	for _, e := range after {
		if e.Kind == "mirror" {
			rejected++
		}
	}
	if rejected == 0 {
		t.Fatal("the flood left no trace: the test did not reach the mirror")
	}
	for _, e := range before {
		found := false
		for _, a := range after {
			found = found || a.Time.Equal(e.Time) && a.Message == e.Message
		}
		if !found {
			t.Errorf("entry lost to the flood: %v", e)
		}
	}
	if rejected > 25 {
		t.Errorf("%d entries of the flood kept", rejected)
	}
}
