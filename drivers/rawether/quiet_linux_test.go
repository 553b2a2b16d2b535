//go:build linux

package rawether

import (
	"bytes"
	"errors"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func listenQuiet(t *testing.T, name string, f *Filter) Drainer {
	t.Helper()
	q, err := ListenQuiet(name, testEtherType, f)
	if errors.Is(err, unix.ENOPROTOOPT) && os.Getenv("PAIRGUARD_TEST_EMULATED") == "1" {
		// qemu-user does not pass SO_TIMESTAMPNS on; a board's kernel does.
		t.Skipf("under qemu-user: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

// A quiet Conn queues frames until RecvNow takes them, each with the time
// the kernel received it; its filter, its own frames and Recv work as
// Listen's.
func TestQuietDrain(t *testing.T) {
	na, nb := vethPair(t)
	a := listen(t, na)
	q := listenQuiet(t, nb, &Filter{Match: []Match{{Offset: 0, Value: []byte("hb")}}})
	buf := make([]byte, 2000)
	if _, _, _, err := q.RecvNow(buf); !errors.Is(err, ErrNoFrame) {
		t.Fatalf("RecvNow on an empty queue: %v, want ErrNoFrame", err)
	}
	// The kernel turns receive timestamps on in the background, once a
	// socket asks for them: a frame arriving before is dated when taken.
	time.Sleep(100 * time.Millisecond)
	var sent []time.Time
	for _, p := range []string{"hb one", "other", "hb two"} {
		sent = append(sent, time.Now())
		if err := a.Send(Broadcast, []byte(p)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Taken later, dated when they arrived.
	time.Sleep(50 * time.Millisecond)
	for i, want := range []string{"hb one", "hb two"} {
		n, src, at, err := q.RecvNow(buf)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if string(buf[:n]) != want || !bytes.Equal(src, a.Addr()) {
			t.Fatalf("frame %d: %q from %v, want %q from %v", i, buf[:n], src, want, a.Addr())
		}
		s := sent[2*i]
		if at.Before(s) || at.After(s.Add(15*time.Millisecond)) {
			t.Errorf("frame %d dated %v after its send, want its arrival (within 15ms)", i, at.Sub(s))
		}
	}
	if _, _, _, err := q.RecvNow(buf); !errors.Is(err, ErrNoFrame) {
		t.Fatalf("RecvNow after the queue: %v, want ErrNoFrame", err)
	}

	// Its own frames are not received; the peer hears them.
	if err := q.Send(Broadcast, []byte("hb from q")); err != nil {
		t.Fatal(err)
	}
	if got, _, err := recv(t, a); err != nil || string(got) != "hb from q" {
		t.Fatalf("a received %q, %v", got, err)
	}
	time.Sleep(20 * time.Millisecond)
	if n, _, _, err := q.RecvNow(buf); !errors.Is(err, ErrNoFrame) {
		t.Fatalf("q heard %q (%v): its own frame", buf[:n], err)
	}

	// Recv waits, and gives up at the deadline.
	go func() {
		time.Sleep(30 * time.Millisecond)
		a.Send(Broadcast, []byte("hb late"))
	}()
	q.SetReadDeadline(time.Now().Add(time.Second))
	if n, _, err := q.Recv(buf); err != nil || string(buf[:n]) != "hb late" {
		t.Fatalf("Recv: %q, %v", buf[:n], err)
	}
	q.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, _, err := q.Recv(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Recv with nothing sent: %v, want a deadline error", err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := q.RecvNow(buf); err == nil || errors.Is(err, ErrNoFrame) {
		t.Fatalf("RecvNow after Close: %v", err)
	}
}

// RecvNow allocates nothing per frame.
func TestQuietRecvNowAllocs(t *testing.T) {
	na, nb := vethPair(t)
	a := listen(t, na)
	q := listenQuiet(t, nb, nil)
	buf := make([]byte, 2000)
	payload := []byte("heartbeat")
	allocs := testing.AllocsPerRun(50, func() {
		a.Send(Broadcast, payload)
		for i := 0; i < 100; i++ {
			if _, _, _, err := q.RecvNow(buf); err == nil {
				return
			}
			time.Sleep(100 * time.Microsecond)
		}
	})
	if allocs > 0 {
		t.Errorf("%.1f allocations per frame sent and drained", allocs)
	}
}
