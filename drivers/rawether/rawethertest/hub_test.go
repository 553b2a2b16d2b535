package rawethertest

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pairguard/pairguard/drivers/rawether"
)

var (
	macA = net.HardwareAddr{2, 0, 0, 0, 0, 0xa}
	macB = net.HardwareAddr{2, 0, 0, 0, 0, 0xb}
	macC = net.HardwareAddr{2, 0, 0, 0, 0, 0xc}
)

// pending returns the number of frames queued at c.
func pending(c *Port) int { return len(c.queue) }

func mustRecv(t *testing.T, c rawether.Conn) (string, net.HardwareAddr) {
	t.Helper()
	buf := make([]byte, 1500)
	n, src, err := c.Recv(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n]), src
}

func TestUnicastAndBroadcast(t *testing.T) {
	h := NewHub()
	a, b, c := h.Port("a", macA), h.Port("b", macB), h.Port("c", macC)
	if err := a.Send(macB, []byte("to b")); err != nil {
		t.Fatal(err)
	}
	if got, src := mustRecv(t, b); got != "to b" || !bytes.Equal(src, macA) {
		t.Fatalf("b got %q from %v", got, src)
	}
	if pending(c) != 0 || pending(a) != 0 {
		t.Fatal("unicast reached another port or the sender")
	}
	if err := a.Send(rawether.Broadcast, []byte("all")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*Port{b, c} {
		if got, _ := mustRecv(t, p); got != "all" {
			t.Fatalf("%s got %q", p.Name(), got)
		}
	}
	if pending(a) != 0 {
		t.Fatal("sender heard its own broadcast")
	}
	if !bytes.Equal(a.Addr(), macA) || a.Sent() != 2 {
		t.Fatalf("Addr %v Sent %d", a.Addr(), a.Sent())
	}
}

func TestPayloadCopied(t *testing.T) {
	h := NewHub()
	a, b := h.Port("a", macA), h.Port("b", macB)
	p := []byte("hello")
	a.Send(macB, p)
	p[0] = 'X'
	if got, _ := mustRecv(t, b); got != "hello" {
		t.Fatalf("got %q", got)
	}
}

func TestCutRestore(t *testing.T) {
	h := NewHub()
	a, b := h.Port("a", macA), h.Port("b", macB)
	h.Cut("b")
	a.Send(macB, []byte("lost"))
	b.Send(macA, []byte("lost too"))
	if pending(a)+pending(b) != 0 {
		t.Fatal("frames crossed a cut link")
	}
	h.Restore("b")
	a.Send(macB, []byte("back"))
	if got, _ := mustRecv(t, b); got != "back" {
		t.Fatalf("got %q", got)
	}
}

func TestDrop(t *testing.T) {
	h := NewHub()
	a, b := h.Port("a", macA), h.Port("b", macB)
	h.Drop(100)
	a.Send(macB, []byte("x"))
	if pending(b) != 0 {
		t.Fatal("Drop(100) delivered")
	}
	h.Drop(30)
	const n = 200
	for range n {
		a.Send(macB, []byte("x"))
	}
	got := pending(b)
	if got < n*50/100 || got > n*90/100 {
		t.Fatalf("Drop(30): %d of %d delivered", got, n)
	}
	h.Drop(0)
	for range len(b.queue) {
		<-b.queue
	}
	a.Send(macB, []byte("x"))
	if pending(b) != 1 {
		t.Fatal("Drop(0) lost a frame")
	}
}

func TestOverflow(t *testing.T) {
	h := NewHub()
	a, b := h.Port("a", macA), h.Port("b", macB)
	for range QueueLen + 5 {
		a.Send(macB, []byte("x"))
	}
	if b.Overflow() != 5 || pending(b) != QueueLen {
		t.Fatalf("overflow %d, pending %d", b.Overflow(), pending(b))
	}
}

func TestDelayAndDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := NewHub()
		a, b := h.Port("a", macA), h.Port("b", macB)
		h.Delay(50 * time.Millisecond)
		start := time.Now()
		a.Send(macB, []byte("late"))
		b.SetReadDeadline(start.Add(20 * time.Millisecond))
		if _, _, err := b.Recv(make([]byte, 10)); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Recv before delay: %v", err)
		}
		b.SetReadDeadline(time.Time{})
		if got, _ := mustRecv(t, b); got != "late" {
			t.Fatalf("got %q", got)
		}
		if d := time.Since(start); d != 50*time.Millisecond {
			t.Fatalf("delivered after %v", d)
		}
		// A deadline in the past fails at once, a cleared one blocks.
		b.SetReadDeadline(time.Now().Add(-time.Second))
		if _, _, err := b.Recv(nil); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("past deadline: %v", err)
		}
	})
}

func TestCloseUnblocksRecv(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := NewHub()
		a := h.Port("a", macA)
		done := make(chan error)
		go func() {
			_, _, err := a.Recv(make([]byte, 10))
			done <- err
		}()
		synctest.Wait()
		a.Close()
		if err := <-done; !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Recv after Close: %v", err)
		}
		if err := a.Send(rawether.Broadcast, nil); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Send after Close: %v", err)
		}
	})
}

func TestWatchLink(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := NewHub()
		h.Port("a", macA)
		ctx, cancel := context.WithCancel(context.Background())
		events, err := h.WatchLink(ctx, "a")
		if err != nil {
			t.Fatal(err)
		}
		missing, _ := h.WatchLink(ctx, "nope")
		if e := <-missing; e.Up {
			t.Fatalf("missing port up: %+v", e)
		}
		h.Cut("a")
		h.Cut("a") // no change, no event
		h.Restore("a")
		for i, want := range []bool{true, false, true} {
			if e := <-events; e.Up != want || e.Name != "a" {
				t.Fatalf("event %d: %+v, want up=%v", i, e, want)
			}
		}
		synctest.Wait()
		select {
		case e := <-events:
			t.Fatalf("extra event %+v", e)
		default:
		}
		cancel()
		if _, ok := <-events; ok {
			t.Fatal("channel open after cancel")
		}
		<-missing
	})
}

// RecvNow returns at once: the queued frames with the time they reached
// the port (after the hub's delay), then ErrNoFrame.
func TestRecvNow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := NewHub()
		a, b := h.Port("a", macA), h.Port("b", macB)
		buf := make([]byte, 100)
		if _, _, _, err := b.RecvNow(buf); !errors.Is(err, rawether.ErrNoFrame) {
			t.Fatalf("RecvNow on an empty port: %v", err)
		}
		h.Delay(3 * time.Millisecond)
		start := time.Now()
		a.Send(macB, []byte("one"))
		time.Sleep(10 * time.Millisecond)
		synctest.Wait()
		n, src, at, err := b.RecvNow(buf)
		if err != nil || string(buf[:n]) != "one" || !bytes.Equal(src, macA) {
			t.Fatalf("RecvNow: %q from %v, %v", buf[:n], src, err)
		}
		if got := at.Sub(start); got != 3*time.Millisecond {
			t.Errorf("frame dated %v after its send, want its arrival 3ms after", got)
		}
		if _, _, _, err := b.RecvNow(buf); !errors.Is(err, rawether.ErrNoFrame) {
			t.Fatalf("RecvNow after the queue: %v", err)
		}
		b.Close()
		if _, _, _, err := b.RecvNow(buf); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("RecvNow after Close: %v", err)
		}
	})
}
