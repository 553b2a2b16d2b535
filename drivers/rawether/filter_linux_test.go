//go:build linux

package rawether

import (
	"bytes"
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// The socket filter passes exactly what Filter.Accepts passes: the kernel
// and the fakes agree.
func TestFilterInKernel(t *testing.T) {
	na, nb := vethPair(t)
	f := &Filter{
		Match:  []Match{{Offset: 0, Value: []byte("PG")}, {Offset: 8, Value: []byte{1, 2, 3, 4}}, {Offset: 20, Value: []byte{9, 8, 7}}},
		MinLen: 30, MaxLen: 200,
		Lengths: []LengthIf{{Offset: 2, Value: 1, Len: 100}, {Offset: 2, Value: 2, Len: 120}},
	}
	a := listen(t, na)
	b, err := Listen(nb, testEtherType, f)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	good := make([]byte, 100)
	copy(good, "PG")
	copy(good[8:], []byte{1, 2, 3, 4})
	copy(good[20:], []byte{9, 8, 7})
	mod := func(fn func([]byte) []byte) []byte { return fn(bytes.Clone(good)) }
	cases := map[string][]byte{
		"good":          good,
		"magic":         mod(func(p []byte) []byte { p[1] = 'X'; return p }),
		"pair":          mod(func(p []byte) []byte { p[11] = 5; return p }),
		"odd length":    mod(func(p []byte) []byte { p[22] = 0; return p }),
		"short":         good[:29],
		"too long":      append(bytes.Clone(good), make([]byte, 101)...),
		"longest":       append(bytes.Clone(good), make([]byte, 100)...),
		"below 12":      []byte("PG"),
		"empty-ish":     make([]byte, 46),
		"jumbo-ish":     append(bytes.Clone(good), make([]byte, 1300)...),
		"good again":    good,
		"exactly min":   append(bytes.Clone(good[:30]), make([]byte, 16)...),
		"pair shifted":  mod(func(p []byte) []byte { copy(p[9:], []byte{1, 2, 3, 4}); return p }),
		"kind 1 at 100": mod(func(p []byte) []byte { p[2] = 1; return p }),
		"kind 1 at 101": mod(func(p []byte) []byte { p[2] = 1; return append(p, 0) }),
		"kind 2 at 100": mod(func(p []byte) []byte { p[2] = 2; return p }),
		"kind 2 at 120": mod(func(p []byte) []byte { p[2] = 2; return append(p, make([]byte, 20)...) }),
		"kind 3 at 150": mod(func(p []byte) []byte { p[2] = 3; return append(p, make([]byte, 50)...) }),
	}
	buf := make([]byte, 2000)
	for name, p := range cases {
		if err := a.Send(Broadcast, p); err != nil {
			t.Fatal(err)
		}
		padded := p // a veth does not pad short frames
		b.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, _, err := b.Recv(buf)
		got := err == nil
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("%s: %v", name, err)
		}
		if want := f.Accepts(padded); got != want || (got && !bytes.Equal(buf[:n], padded)) {
			t.Errorf("%s (%d bytes): kernel passed %v, Accepts %v", name, len(p), got, want)
		}
	}
}

// A payload longer than the caller's buffer is reported at once, and the
// next frame follows without delay.
func TestRecvTruncated(t *testing.T) {
	na, nb := vethPair(t)
	a, b := listen(t, na), listen(t, nb)
	if err := a.Send(Broadcast, make([]byte, 1400)); err != nil {
		t.Fatal(err)
	}
	if err := a.Send(Broadcast, []byte("next")); err != nil {
		t.Fatal(err)
	}
	b.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 256)
	if n, _, err := b.Recv(buf); !errors.Is(err, ErrTruncated) || n != len(buf) {
		t.Fatalf("Recv of 1400 bytes into 256: %d, %v; want ErrTruncated", n, err)
	}
	if n, _, err := b.Recv(buf); err != nil || string(buf[:n]) != "next" {
		t.Fatalf("next Recv: %q, %v", buf[:n], err)
	}
}

// A frame longer than the socket's buffer (the MTU grew after Listen) is
// reported truncated with its real length, not silently cut.
func TestRecvBeyondMTUAtListen(t *testing.T) {
	na, nb := vethPair(t)
	b := listen(t, nb)
	for _, n := range []string{na, nb} {
		if err := ip("link", "set", n, "mtu", "3000"); err != nil {
			t.Fatal(err)
		}
	}
	a := listen(t, na)
	if err := a.Send(Broadcast, make([]byte, 2500)); err != nil {
		t.Fatal(err)
	}
	b.SetReadDeadline(time.Now().Add(time.Second))
	if _, _, err := b.Recv(make([]byte, 4000)); !errors.Is(err, ErrTruncated) {
		t.Fatalf("Recv of 2500 bytes on a socket opened at MTU 1500: %v, want ErrTruncated", err)
	}
}

// The interface is deleted and created again under the same name: Recv
// reports the link down, Refresh reopens on the new interface, and frames
// flow again, to a Recv that was blocked on the old socket too.
func TestRefreshAfterRecreate(t *testing.T) {
	na, nb := vethPair(t)
	a, b := listen(t, na), listen(t, nb)
	if ok, err := b.Refresh(); ok || err != nil {
		t.Fatalf("Refresh of an unchanged interface: %v, %v", ok, err)
	}
	got := make(chan error, 1)
	go func() {
		buf := make([]byte, 100)
		b.SetReadDeadline(time.Now().Add(10 * time.Second))
		for {
			n, _, err := b.Recv(buf)
			if errors.Is(err, ErrLinkDown) {
				continue
			}
			if err == nil && string(buf[:n]) != "after" {
				continue
			}
			got <- err
			return
		}
	}()
	time.Sleep(50 * time.Millisecond)
	if err := ip("link", "del", na); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Refresh(); !errors.Is(err, ErrNoInterface) {
		t.Fatalf("Refresh while gone: %v, want ErrNoInterface", err)
	}
	if err := a.Send(Broadcast, []byte("x")); !errors.Is(err, ErrLinkDown) {
		t.Errorf("Send on a deleted interface: %v, want ErrLinkDown", err)
	}
	if err := ip("link", "add", na, "type", "veth", "peer", "name", nb); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{na, nb} {
		if err := ip("link", "set", n, "up"); err != nil {
			t.Fatal(err)
		}
	}
	waitOperUp(t, na)
	waitOperUp(t, nb)
	for _, c := range []Conn{a, b} {
		if ok, err := c.Refresh(); !ok || err != nil {
			t.Fatalf("Refresh after the interface came back: %v, %v", ok, err)
		}
	}
	ifb, _ := net.InterfaceByName(nb)
	if !bytes.Equal(b.Addr(), ifb.HardwareAddr) {
		t.Errorf("Addr %v, want the new interface's %v", b.Addr(), ifb.HardwareAddr)
	}
	if err := a.Send(Broadcast, []byte("after")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("Recv after Refresh: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the blocked Recv never got the frame on the new interface")
	}
}
