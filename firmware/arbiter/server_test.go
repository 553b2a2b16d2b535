package arbiter

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// Loopback tests: a Server and Conns on 127.0.0.1.

func startServer(t *testing.T, dir string, cfg Config) *Server {
	t.Helper()
	s, err := Listen("127.0.0.1:0", ServerConfig{Config: cfg, StateDir: dir, Keys: [][]byte{DeriveKey(testPairKey)}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s
}

type node struct {
	conn   *Conn
	events chan Event
}

func dialNode(t *testing.T, addr net.Addr, id uint64) *node {
	t.Helper()
	base := time.Now()
	mode := ModeSpare
	if id == mainID {
		mode = ModeMain
	}
	c, err := Dial(addr.String(), ClientConfig{Key: testKey(), Node: id, Mode: mode,
		Lease: 400 * ms, Retry: 20 * ms}, func() time.Duration { return time.Since(base) })
	if err != nil {
		t.Fatal(err)
	}
	c.SetInfo(Info{Role: RoleSecondary, Data: DataUpToDate})
	n := &node{conn: c, events: make(chan Event, 64)}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := c.Run(ctx, n.events); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return n
}

// await returns the first event that satisfies ok, or fails after limit.
func (n *node) await(t *testing.T, limit time.Duration, ok func(Event) bool) Event {
	t.Helper()
	deadline := time.After(limit)
	for {
		select {
		case ev := <-n.events:
			if ok(ev) {
				return ev
			}
		case <-deadline:
			t.Fatalf("no such event within %v", limit)
		}
	}
}

func granted(ev Event) bool { return ev.Kind == EventGranted }

func fastCfg() Config { return Config{MaxLease: 500 * ms, Margin: 50 * ms, Window: 100 * ms} }

func TestServerLoopback(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir, fastCfg())
	m := dialNode(t, s.Addr(), mainID)
	sp := dialNode(t, s.Addr(), spare)
	m.conn.Want(true)
	ev := m.await(t, 5*time.Second, granted)
	if ev.Holder != mainID || ev.Epoch != 1 {
		t.Fatalf("grant %+v", ev)
	}
	sp.conn.Want(true)
	ev = sp.await(t, 5*time.Second, func(ev Event) bool { return ev.Kind == EventDenied && ev.Reason == ReasonHeld })
	if ev.Holder != mainID {
		t.Fatalf("deny %+v", ev)
	}
	st := s.Status()
	if st.Starting || len(st.Pairs) != 1 || st.Pairs[0].Holder != "0000000000000001" || st.Pairs[0].LeaseMS <= 0 {
		t.Fatalf("status %+v", st)
	}
	if _, err := json.Marshal(st); err != nil {
		t.Fatal(err)
	}
	// The grant is on disk.
	b, err := os.ReadFile(filepath.Join(dir, StateFile))
	if err != nil {
		t.Fatal(err)
	}
	var saved State
	if err := json.Unmarshal(b, &saved); err != nil || len(saved.Pairs) != 1 || saved.Pairs[0].Holder != mainID {
		t.Fatalf("state %s: %v", b, err)
	}
	// The main gives its lease back: the spare gets it.
	m.conn.Want(false)
	ev = sp.await(t, 5*time.Second, granted)
	if ev.Holder != spare || ev.Epoch != 2 {
		t.Fatalf("grant %+v", ev)
	}
}

func TestServerRestartKeepsHolder(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := Listen("127.0.0.1:0", ServerConfig{Config: fastCfg(), StateDir: dir, Keys: [][]byte{DeriveKey(testPairKey)}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	m := dialNode(t, s.Addr(), mainID)
	m.conn.Want(true)
	m.await(t, 5*time.Second, granted)
	cancel()
	<-done
	s.Close()

	// Restarted with a long wait: the recorded holder renews at once, the
	// other node is told the arbiter is starting.
	long := Config{MaxLease: time.Minute, Margin: 50 * ms, Window: 100 * ms}
	s2 := startServer(t, dir, long)
	if !s2.Status().Starting {
		t.Error("a restarted arbiter is not starting")
	}
	m2 := dialNode(t, s2.Addr(), mainID) // a new client: its counter is stale
	sp := dialNode(t, s2.Addr(), spare)
	m2.conn.Want(true)
	sp.conn.Want(true)
	ev := m2.await(t, 5*time.Second, granted)
	if ev.Epoch != 1 {
		t.Errorf("epoch %d after restart, want 1", ev.Epoch)
	}
	sp.await(t, 5*time.Second, func(ev Event) bool { return ev.Kind == EventDenied && ev.Reason == ReasonHeld })

	// Lost state: nobody is granted during the wait.
	dir2 := t.TempDir()
	s3 := startServer(t, dir2, long)
	m3 := dialNode(t, s3.Addr(), mainID)
	m3.conn.Want(true)
	m3.await(t, 5*time.Second, func(ev Event) bool {
		if ev.Kind == EventGranted {
			t.Fatal("granted without state during the wait")
		}
		return ev.Reason == ReasonStarting
	})
}

func TestServerDropsStrangers(t *testing.T) {
	// A long start wait: the good request is answered "starting" however
	// slow the machine.
	s := startServer(t, t.TempDir(), Config{MaxLease: time.Minute, Margin: 50 * ms, Window: 100 * ms})
	c, err := net.Dial("udp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	other := NewKey(DeriveKey([]byte("another pair key, 16+")))
	foreign, _ := testRequest(other).Append(nil, other)
	k := testKey()
	good, _ := testRequest(k).Append(nil, k)
	tampered := append([]byte(nil), good...)
	tampered[20] ^= 1
	for _, b := range [][]byte{foreign, tampered, good[:50], []byte("hello")} {
		c.Write(b)
	}
	c.SetReadDeadline(time.Now().Add(300 * ms))
	buf := make([]byte, 512)
	if n, err := c.Read(buf); err == nil {
		t.Fatalf("a reply (%d bytes) to a stranger", n)
	}
	for deadline := time.Now().Add(5 * time.Second); s.Status().Dropped < 4 && time.Now().Before(deadline); {
		time.Sleep(10 * ms)
	}
	if d := s.Status().Dropped; d != 4 {
		t.Errorf("dropped %d, want 4", d)
	}
	// The good request is answered, once: its replay is refused.
	c.Write(good)
	c.Write(good)
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	var rep Reply
	if err := DecodeReply(buf[:n], k, &rep); err != nil || rep.Reason != ReasonStarting {
		t.Fatalf("reply %+v, %v", rep, err)
	}
	n, err = c.Read(buf)
	if err != nil || DecodeReply(buf[:n], k, &rep) != nil || rep.Reason != ReasonStaleCounter {
		t.Fatalf("replay: reply %+v, %v", rep, err)
	}
}

func TestServerWithholdsUnsavedGrant(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir, fastCfg())
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("udp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	k := testKey()
	good, _ := testRequest(k).Append(nil, k) // a new node: its counter must be saved
	c.Write(good)
	c.SetReadDeadline(time.Now().Add(300 * ms))
	if _, err := c.Read(make([]byte, 512)); err == nil {
		t.Fatal("a reply whose state could not be saved was sent")
	}
}

func TestListenRefusesDuplicateKeys(t *testing.T) {
	k := DeriveKey(testPairKey)
	if _, err := Listen("127.0.0.1:0", ServerConfig{Config: fastCfg(), StateDir: t.TempDir(), Keys: [][]byte{k, k}}); err == nil {
		t.Fatal("a key listed twice was accepted")
	}
	if _, err := Listen("127.0.0.1:0", ServerConfig{Config: fastCfg(), StateDir: t.TempDir(), Keys: [][]byte{[]byte("short")}}); err == nil {
		t.Fatal("a short key was accepted")
	}
}

func TestCorruptStateIsLikeLostState(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, StateFile), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, dir, fastCfg())
	if !s.Status().Starting {
		t.Error("not starting")
	}
}

func TestConnReportsUnreachable(t *testing.T) {
	// A port nobody listens on: the requests are refused or lost.
	l, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	addr := l.LocalAddr()
	l.Close()
	n := dialNode(t, addr, mainID)
	n.conn.Want(true)
	ev := n.await(t, 5*time.Second, func(ev Event) bool { return true })
	if ev.Kind != EventUnreachable {
		t.Fatalf("event %+v, want unreachable", ev)
	}
	if st, _ := n.conn.Status(); !st.Unreachable || !st.Wanting {
		t.Errorf("status %+v", st)
	}
}

func TestConnRunStops(t *testing.T) {
	s := startServer(t, t.TempDir(), fastCfg())
	c, err := Dial(s.Addr().String(), ClientConfig{Key: testKey(), Node: 1, Mode: ModeMain},
		func() time.Duration { return 0 })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	events := make(chan Event) // nobody reads: Run must still stop
	go func() { done <- c.Run(ctx, events) }()
	c.Want(true)
	time.Sleep(50 * ms)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

func TestServerSetKeys(t *testing.T) {
	s := startServer(t, t.TempDir(), fastCfg())
	other := DeriveKey([]byte("another pair key, 16+"))
	if err := s.SetKeys([][]byte{DeriveKey(testPairKey), other}); err != nil {
		t.Fatal(err)
	}
	if n := len(s.Status().Pairs); n != 2 {
		t.Fatalf("%d pairs after adding one", n)
	}
	if err := s.SetKeys([][]byte{other}); err != nil {
		t.Fatal(err)
	}
	st := s.Status()
	if len(st.Pairs) != 1 || st.Pairs[0].Pair != fmt.Sprintf("%08x", PairID(other)) {
		t.Fatalf("pairs %+v", st.Pairs)
	}
	if err := s.SetKeys([][]byte{other, other}); err == nil {
		t.Fatal("duplicate accepted")
	}
}
