package daemon

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pairguard/pairguard/drivers/nbd"
	"github.com/pairguard/pairguard/drivers/nbd/nbdtest"
	"github.com/pairguard/pairguard/firmware/engine"
	"github.com/pairguard/pairguard/firmware/logbook"
	"github.com/pairguard/pairguard/sdcard/online"
)

func newTestOnline(t *testing.T, name string, fake *nbdtest.Fake, listen, peer string, main bool) *onlineMirror {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	os.MkdirAll(dir, 0o700)
	img := filepath.Join(dir, "data.img")
	if err := os.WriteFile(img, make([]byte, 16<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	book, err := logbook.Open(dir, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return &onlineMirror{
		device: img, stateDir: dir, key: bytes.Repeat([]byte{3}, 32), repl: online.Sync, failover: time.Second,
		listen: listen, peer: peer, nbdSocket: filepath.Join(dir, "nbd.sock"), nbdDev: "/dev/nbd3",
		bootstrap: main, log: slog.New(slog.DiscardHandler), book: book, index: -1,
		openAttacher: func() (nbd.Attacher, error) { return fake, nil },
	}
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func waitState(t *testing.T, m *onlineMirror, state string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); m.Status().State != state; {
		if time.Now().After(deadline) {
			t.Fatalf("state %q, want %q", m.Status().State, state)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The export is attached when SetPrimary(true) returns (the to-primary
// hook runs after it), a write through the kernel device is on the spare
// once acknowledged, a demotion disconnects the device and closes the
// socket, and the spare then serves the data.
func TestOnlineMirrorRoles(t *testing.T) {
	fake := nbdtest.New()
	addrA, addrB := freeAddr(t), freeAddr(t)
	a := newTestOnline(t, "a", fake, addrA, addrB, true)
	b := newTestOnline(t, "b", fake, addrB, addrA, false)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := make(chan engine.Event, 1024)
	go func() {
		for range events {
		}
	}()
	for _, m := range []*onlineMirror{a, b} {
		if _, err := m.Open(); err != nil {
			t.Fatal(err)
		}
		m.Start(ctx, events)
		defer m.Stop()
	}
	a.SetPrimary(true, true)
	dev := fake.Device(3)
	if dev == nil || !dev.Connected() || dev.Config().Size != 16<<20 {
		t.Fatal("nbd-device not attached when SetPrimary returned")
	}
	if _, err := os.Stat(a.nbdSocket); err != nil {
		t.Fatalf("nbd-socket not there when SetPrimary returned: %v", err)
	}
	if _, err := os.Stat(b.nbdSocket); err == nil {
		t.Fatal("the secondary exports its copy")
	}
	waitState(t, a, "in-sync")
	data := bytes.Repeat([]byte("pairguard"), 400)
	data = append(data, make([]byte, 4096-len(data))...)
	if _, err := dev.WriteAt(data, 1<<20); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4096)
	f, _ := os.Open(b.device)
	f.ReadAt(got, 1<<20)
	f.Close()
	if !bytes.Equal(got, data) {
		t.Fatal("an acknowledged write is not on the spare")
	}
	if err := a.Flush(ctx); err != nil {
		t.Fatalf("drain before a swap: %v", err)
	}
	a.SetPrimary(false, false)
	if dev.Connected() {
		t.Fatal("demotion did not disconnect the device")
	}
	if _, err := net.Dial("unix", a.nbdSocket); err == nil {
		t.Fatal("the demoted node still exports")
	}
	b.SetPrimary(true, true)
	dev2 := fake.Device(3)
	if dev2 == nil || !dev2.Connected() {
		t.Fatal("the new primary did not attach")
	}
	if _, err := dev2.ReadAt(got, 1<<20); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the new primary serves other data (%v)", err)
	}
}
