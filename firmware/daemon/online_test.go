package daemon

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
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
		bootstrap: main, log: slog.New(slog.DiscardHandler), book: book, connectionWait: time.Second,
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
	go drain(ctx, events)
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

// reopen is a new run of the daemon on m's device and state: the same
// config, a fresh mirror.
func reopen(t *testing.T, m *onlineMirror, fake *nbdtest.Fake) *onlineMirror {
	t.Helper()
	book, err := logbook.Open(m.stateDir, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return &onlineMirror{
		device: m.device, stateDir: m.stateDir, key: m.key, repl: m.repl, failover: m.failover,
		listen: m.listen, peer: m.peer, nbdSocket: m.nbdSocket, nbdDev: m.nbdDev, bootstrap: m.bootstrap,
		log: m.log, book: book, connectionWait: m.connectionWait,
		openAttacher: func() (nbd.Attacher, error) { return fake, nil },
	}
}

// drain takes the mirror's events until the test's context ends (a
// goroutine left waiting on the channel would outlive the test).
func drain(ctx context.Context, events chan engine.Event) {
	for {
		select {
		case <-events:
		case <-ctx.Done():
			return
		}
	}
}

// A daemon that stops while primary leaves the kernel device attached; a
// write meanwhile stalls instead of failing, and the next run of the
// daemon, once primary, hands the device new sockets (RECONFIGURE, not
// CONNECT), which completes the write.
func TestOnlineMirrorRestartUnderDevice(t *testing.T) {
	fake := nbdtest.New()
	a := newTestOnline(t, "a", fake, "", "", true)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := make(chan engine.Event, 1024)
	go drain(ctx, events)
	if _, err := a.Open(); err != nil {
		t.Fatal(err)
	}
	a.Start(ctx, events)
	a.SetPrimary(true, true)
	dev := fake.Device(3)
	blk := bytes.Repeat([]byte{0x5e}, 4096)
	if _, err := dev.WriteAt(blk, 0); err != nil {
		t.Fatal(err)
	}
	a.Stop()
	if !dev.Connected() {
		t.Fatal("the daemon's stop disconnected the device under its filesystem")
	}
	stalled := make(chan error, 1)
	go func() { _, err := dev.WriteAt(blk, 8192); stalled <- err }()
	b := reopen(t, a, fake)
	if _, err := b.Open(); err != nil {
		t.Fatal(err)
	}
	b.Start(ctx, events)
	defer b.Stop()
	select {
	case err := <-stalled:
		t.Fatalf("a write with the daemon stopped returned %v before it came back", err)
	case <-time.After(100 * time.Millisecond):
	}
	b.SetPrimary(true, true)
	select {
	case err := <-stalled:
		if err != nil {
			t.Fatalf("the stalled write failed: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stalled write did not complete after the restart")
	}
	if want := []string{"connect 3", "reconfigure 3"}; !slices.Equal(fake.Calls(), want) {
		t.Errorf("calls %v, want %v", fake.Calls(), want)
	}
	got := make([]byte, 4096)
	if _, err := dev.ReadAt(got, 8192); err != nil || !bytes.Equal(got, blk) {
		t.Fatalf("read back after the restart: %v", err)
	}
}

// A connection the kernel drops (after a request timeout) is replaced.
func TestOnlineMirrorReplacesDroppedConnection(t *testing.T) {
	fake := nbdtest.New()
	a := newTestOnline(t, "a", fake, "", "", true)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := make(chan engine.Event, 1024)
	go drain(ctx, events)
	if _, err := a.Open(); err != nil {
		t.Fatal(err)
	}
	a.Start(ctx, events)
	defer a.Stop()
	a.SetPrimary(true, true)
	dev := fake.Device(3)
	if dev.Live() != kernelSockets {
		t.Fatalf("%d live connections, want %d", dev.Live(), kernelSockets)
	}
	dev.Drop(0)
	for deadline := time.Now().Add(10 * time.Second); dev.Reconnected() < 1 || dev.Live() != kernelSockets; {
		if time.Now().After(deadline) {
			t.Fatalf("dropped connection not replaced: %d reconnected, %d live", dev.Reconnected(), dev.Live())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := dev.WriteAt(make([]byte, 4096), 0); err != nil {
		t.Fatal(err)
	}
}

// A node whose daemon restarts and turns out secondary detaches the device
// its earlier run left attached; a device another server attached is left
// alone.
func TestOnlineMirrorSecondaryDetachesStaleDevice(t *testing.T) {
	fake := nbdtest.New()
	a := newTestOnline(t, "a", fake, "", "", true)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := make(chan engine.Event, 1024)
	go drain(ctx, events)
	if _, err := a.Open(); err != nil {
		t.Fatal(err)
	}
	a.Start(ctx, events)
	a.SetPrimary(true, true)
	a.Stop()
	b := reopen(t, a, fake)
	if _, err := b.Open(); err != nil {
		t.Fatal(err)
	}
	b.Start(ctx, events)
	defer b.Stop()
	b.SetPrimary(false, false)
	if fake.Device(3).Connected() {
		t.Fatal("the secondary left the stale device attached")
	}

	other := nbdtest.New()
	kernel, server, err := nbd.SocketPairs(1)
	if err != nil {
		t.Fatal(err)
	}
	defer server[0].Close()
	if _, err := other.Connect(nbd.Config{Index: 3, Size: 4096, Identifier: "someone-else"}, kernel); err != nil {
		t.Fatal(err)
	}
	kernel[0].Close()
	c := reopen(t, a, other)
	if _, err := c.Open(); err != nil {
		t.Fatal(err)
	}
	c.Start(ctx, events)
	defer c.Stop()
	c.SetPrimary(false, false)
	if !other.Device(3).Connected() {
		t.Fatal("a device of another NBD server was detached")
	}
}
