//go:build linux

package rawether

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/ethernet"
)

const testEtherType = 0x88B5

// vethPair creates a veth pair in the root network namespace, both ends
// up, and deletes it in t.Cleanup. It skips the test without root.
func vethPair(t *testing.T) (a, b string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("rawether: skipping, needs root (CAP_NET_ADMIN and CAP_NET_RAW) to create a veth pair")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("rawether: skipping, needs the ip command (iproute2)")
	}
	id := fmt.Sprintf("%d%d", os.Getpid()%10000, time.Now().UnixNano()%1000)
	a, b = "pgre"+id+"a", "pgre"+id+"b"
	if err := ip("link", "add", a, "type", "veth", "peer", "name", b); err != nil {
		t.Skipf("rawether: skipping, cannot create a veth pair: %v", err)
	}
	t.Cleanup(func() {
		if err := ip("link", "del", a); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	for _, n := range []string{a, b} {
		if err := ip("link", "set", n, "up"); err != nil {
			t.Fatal(err)
		}
	}
	// Until the kernel's link watcher has activated the queueing
	// discipline, frames are silently dropped: wait for operstate up.
	for _, n := range []string{a, b} {
		waitOperUp(t, n)
	}
	return a, b
}

func waitOperUp(t *testing.T, name string) {
	t.Helper()
	for range 100 {
		state, err := os.ReadFile("/sys/class/net/" + name + "/operstate")
		if err == nil && strings.TrimSpace(string(state)) == "up" {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	state, _ := os.ReadFile("/sys/class/net/" + name + "/operstate")
	t.Fatalf("%s: operstate %q, not up after 5s", name, bytes.TrimSpace(state))
}

func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

func listen(t *testing.T, name string) Conn {
	t.Helper()
	c, err := Listen(name, testEtherType, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// recv receives one payload within a second.
func recv(t *testing.T, c Conn) ([]byte, net.HardwareAddr, error) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2000)
	n, src, err := c.Recv(buf)
	return buf[:n], src, err
}

func TestExchange(t *testing.T) {
	na, nb := vethPair(t)
	a, b := listen(t, na), listen(t, nb)
	ifa, _ := net.InterfaceByName(na)
	if !bytes.Equal(a.Addr(), ifa.HardwareAddr) {
		t.Fatalf("Addr = %v, want %v", a.Addr(), ifa.HardwareAddr)
	}

	for _, dst := range []net.HardwareAddr{b.Addr(), Broadcast} {
		payload := bytes.Repeat([]byte("heartbeat "), 10)
		if err := a.Send(dst, payload); err != nil {
			t.Fatal(err)
		}
		got, src, err := recv(t, b)
		if err != nil {
			t.Fatalf("to %v: %v", dst, err)
		}
		if !bytes.Equal(got, payload) || !bytes.Equal(src, a.Addr()) {
			t.Fatalf("to %v: got %q from %v", dst, got, src)
		}
	}

	// The reply goes back, and the sender does not hear its own frames.
	if err := b.Send(a.Addr(), []byte("reply")); err != nil {
		t.Fatal(err)
	}
	got, _, err := recv(t, a)
	if err != nil || string(got) != "reply" {
		t.Fatalf("reply: %q, %v", got, err)
	}
	if err := b.SetReadDeadline(time.Now().Add(100 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if n, src, err := b.Recv(make([]byte, 100)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("b heard %d bytes from %v (err %v), want a deadline error", n, src, err)
	}
}

func TestOtherEtherTypeIgnored(t *testing.T) {
	na, nb := vethPair(t)
	b := listen(t, nb)
	other, err := Listen(na, 0x88B6, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.Send(Broadcast, []byte("not for you")); err != nil {
		t.Fatal(err)
	}
	if got, _, err := recv(t, b); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("received %q (%v) of another EtherType", got, err)
	}
}

func TestWireFormat(t *testing.T) {
	na, nb := vethPair(t)
	a := listen(t, na)
	// A second socket on b for every EtherType sees the whole frame.
	raw, err := Listen(nb, 0x0003, nil) // ETH_P_ALL
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	rc := raw.(*conn)
	if err := a.Send(Broadcast, []byte("abc")); err != nil {
		t.Fatal(err)
	}
	if err := raw.SetReadDeadline(time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	for {
		n, _, err := rc.cur().pc.ReadFrom(rc.rbuf) // the whole frame, header included
		if err != nil {
			t.Fatal(err)
		}
		var f ethernet.Frame
		if err := f.UnmarshalBinary(rc.rbuf[:n]); err != nil || f.EtherType != testEtherType {
			continue // IPv6 router solicitations and the like
		}
		if !bytes.Equal(f.Destination, ethernet.Broadcast) || !bytes.Equal(f.Source, a.Addr()) || string(f.Payload) != "abc" {
			t.Fatalf("frame %+v", f)
		}
		return
	}
}

func TestErrors(t *testing.T) {
	na, _ := vethPair(t)
	a := listen(t, na)
	if err := a.Send(net.HardwareAddr{1, 2, 3}, nil); err == nil {
		t.Error("Send to a 3-byte address succeeded")
	}
	if err := a.Send(Broadcast, make([]byte, 1501)); err == nil {
		t.Error("Send beyond the MTU succeeded")
	}
	if _, err := Listen("pgre-missing", testEtherType, nil); err == nil {
		t.Error("Listen on a missing interface succeeded")
	}
	if _, err := Listen("lo", testEtherType, nil); err == nil {
		t.Error("Listen on lo (no Ethernet address) succeeded")
	}
}

func TestCloseUnblocksRecv(t *testing.T) {
	na, _ := vethPair(t)
	a, err := Listen(na, testEtherType, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() {
		_, _, err := a.Recv(make([]byte, 100))
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Recv after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Recv still blocked after Close")
	}
}

func TestSendAllocs(t *testing.T) {
	na, _ := vethPair(t)
	a := listen(t, na)
	payload := make([]byte, 100)
	var err error
	if n := testing.AllocsPerRun(200, func() { err = a.Send(Broadcast, payload) }); n != 0 || err != nil {
		t.Fatalf("Send: %v allocations, err %v", n, err)
	}
}

func TestRecvAllocs(t *testing.T) {
	na, nb := vethPair(t)
	a, b := listen(t, na), listen(t, nb)
	buf := make([]byte, 1500)
	payload := make([]byte, 100)
	dst := b.Addr()
	if err := b.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	var err error
	n := testing.AllocsPerRun(200, func() {
		if err = a.Send(dst, payload); err == nil {
			_, _, err = b.Recv(buf)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("Send+Recv: %v allocations, want 0", n)
	}
}

func BenchmarkSend(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	name := fmt.Sprintf("pgreb%d", os.Getpid()%100000)
	if err := ip("link", "add", name+"a", "type", "veth", "peer", "name", name+"b"); err != nil {
		b.Skip(err)
	}
	defer ip("link", "del", name+"a")
	ip("link", "set", name+"a", "up")
	ip("link", "set", name+"b", "up")
	c, err := Listen(name+"a", testEtherType, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	payload := make([]byte, 100)
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Send(Broadcast, payload); err != nil {
			b.Fatal(err)
		}
	}
}

func TestWatchLink(t *testing.T) {
	na, nb := vethPair(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, err := WatchLink(ctx, na)
	if err != nil {
		t.Fatal(err)
	}
	next := func(want bool) {
		t.Helper()
		select {
		case e, ok := <-events:
			if !ok {
				t.Fatal("channel closed")
			}
			if e.Name != na || e.Up != want {
				t.Fatalf("event %+v, want up=%v", e, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no event, want up=%v", want)
		}
	}
	next(true) // the initial state: vethPair waited for operstate up
	// The peer end going down takes the carrier away.
	if err := ip("link", "set", nb, "down"); err != nil {
		t.Fatal(err)
	}
	next(false)
	if err := ip("link", "set", nb, "up"); err != nil {
		t.Fatal(err)
	}
	next(true)
	if err := ip("link", "set", na, "down"); err != nil {
		t.Fatal(err)
	}
	next(false)
	cancel()
	select {
	case e, ok := <-events:
		if ok {
			t.Fatalf("event %+v after cancel", e)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("channel not closed after cancel")
	}
}

func TestWatchLinkMissingInterface(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("rawether: skipping, needs root to create an interface")
	}
	name := fmt.Sprintf("pgrew%d", os.Getpid()%100000)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, err := WatchLink(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if e := <-events; e.Up {
		t.Fatalf("missing interface reported up: %+v", e)
	}
	if err := ip("link", "add", name, "type", "veth", "peer", "name", name+"p"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ip("link", "del", name) })
	for _, n := range []string{name, name + "p"} {
		if err := ip("link", "set", n, "up"); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case e := <-events:
		if !e.Up {
			t.Fatalf("event %+v", e)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no up event after the interface appeared")
	}
	if err := ip("link", "del", name); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-events:
		if e.Up {
			t.Fatalf("event %+v after delete", e)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no down event after the interface was deleted")
	}
}
