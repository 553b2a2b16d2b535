package sdcard

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// tcpPair returns the two ends of a loopback TCP connection, closed when
// the test ends.
func tcpPair(t *testing.T) (dialed, accepted net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	dialed, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dialed.Close() })
	accepted, err = l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { accepted.Close() })
	return dialed, accepted
}

// In bulk mode a stream's tail, shorter than the wake-up mark, still
// arrives (the read falls back after lowatWait instead of stalling), the
// caller's deadline still ends a read, and the bytes come in order.
func TestLowatConnTail(t *testing.T) {
	for _, buffered := range []bool{true, false} {
		t.Run(map[bool]string{true: "buffered", false: "unbuffered"}[buffered], func(t *testing.T) {
			testLowatConnTail(t, buffered)
		})
	}
}

func testLowatConnTail(t *testing.T, buffered bool) {
	w, raw := tcpPair(t)
	c, ok := newLowatConn(raw).(*lowatConn)
	if !ok {
		t.Fatal("no lowatConn over TCP")
	}
	defer c.Close()
	c.setBulk(true, buffered)
	want := make([]byte, 3*lowatBytes+100) // a tail of 100 bytes
	for i := range want {
		want[i] = byte(i * 7)
	}
	go func() {
		w.Write(want[:3*lowatBytes])
		time.Sleep(50 * time.Millisecond) // the reader waits for the tail
		w.Write(want[3*lowatBytes:])
	}()
	got := make([]byte, len(want))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("bytes differ")
	}
	// Nothing more comes: the caller's deadline ends the read.
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := c.Read(got); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read after the stream: %v, want a deadline error", err)
	}
	c.setBulk(false, false)
	c.SetReadDeadline(time.Time{})
	go w.Write([]byte("x"))
	if n, err := c.Read(got); err != nil || n != 1 {
		t.Fatalf("read after bulk: %d, %v", n, err)
	}
}

// In bulk mode the TLS layer's small reads are served from a buffer
// filled lowatBytes at a time: a few reads of the socket for a stream of
// records, the bytes in order, the buffer dropped once bulk ends and it
// is drained.
func TestLowatConnBuffered(t *testing.T) {
	w, raw := tcpPair(t)
	c := newLowatConn(raw).(*lowatConn)
	defer c.Close()
	c.setBulk(true, true)
	const total = 8 * lowatBytes
	want := make([]byte, total)
	for i := range want {
		want[i] = byte(i*13 + i>>12)
	}
	go w.Write(want)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, 0, total)
	rec := make([]byte, 16<<10+21) // about a TLS record at a time
	for len(got) < total-lowatBytes/2 {
		n, err := c.Read(rec)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, rec[:n]...)
	}
	c.setBulk(false, false) // mid-buffer: what is buffered is still read first
	for len(got) < total {
		n, err := c.Read(rec)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, rec[:n]...)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("bytes differ")
	}
	records := total / len(rec)
	if c.reads > records/4 {
		t.Errorf("%d reads of the socket for %d record-sized reads, want a few (about one per %d bytes)", c.reads, records, lowatBytes)
	}
	if c.served == 0 {
		t.Error("no read was served from the buffer")
	}
	if c.rmem != nil || c.rbuf != nil {
		t.Error("the read buffer is kept after bulk ended and it was drained")
	}
}

// countConn counts the writes that reach the connection.
type countConn struct {
	net.Conn
	writes [][]byte
}

func (c *countConn) Write(p []byte) (int, error) {
	c.writes = append(c.writes, append([]byte(nil), p...))
	return len(p), nil
}

// The records of one write go out with one system call, in order; a
// write outside a gathered one goes out at once.
func TestGatherWriter(t *testing.T) {
	cc := &countConn{}
	lc := &lowatConn{Conn: cc}
	records := func(p []byte) (int, error) { // as crypto/tls: one write per 16 KiB record
		for off := 0; off < len(p); off += 16 << 10 {
			if _, err := lc.Write(p[off:min(off+16<<10, len(p))]); err != nil {
				return off, err
			}
		}
		return len(p), nil
	}
	g := &gatherWriter{tc: writerOf(records), lc: lc}
	p := make([]byte, 128<<10)
	for i := range p {
		p[i] = byte(i / 7)
	}
	if n, err := g.Write(p); n != len(p) || err != nil {
		t.Fatalf("write: %d, %v", n, err)
	}
	if len(cc.writes) != 1 || !bytes.Equal(cc.writes[0], p) {
		t.Fatalf("%d writes reached the connection, want 1 with the bytes in order", len(cc.writes))
	}
	big := make([]byte, gatherMax+(32<<10))
	g.Write(big)
	if got := len(cc.writes); got != 3 {
		t.Errorf("a write beyond gatherMax: %d writes in all, want 3", got)
	}
	lc.Write([]byte("alert"))
	if got := len(cc.writes); got != 4 || string(cc.writes[3]) != "alert" {
		t.Errorf("a write outside gathering was held")
	}
}

type writerOf func([]byte) (int, error)

func (f writerOf) Write(p []byte) (int, error) { return f(p) }

// The raw reads under a round's TLS move every byte in order across a
// real socket that the reader waits on (in the poller), the caller's
// deadline still ends a read, and the peer's close reads as the end.
func TestQuietRead(t *testing.T) {
	w, r := tcpPair(t)
	want := make([]byte, 16<<20) // more than the socket buffers hold
	for i := range want {
		want[i] = byte(i*31 + i>>16)
	}
	done := make(chan error, 1)
	go func() {
		for p := want; len(p) > 0; p = p[min(len(p), 1<<20):] {
			time.Sleep(time.Millisecond) // a slow writer: the reader waits
			if _, err := w.Write(p[:min(len(p), 1<<20)]); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	got := make([]byte, 0, len(want))
	buf := make([]byte, 100<<10)
	for len(got) < len(want) {
		n, err := readQuiet(r, buf)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, buf[:n]...)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("bytes differ")
	}
	// Nothing comes: the read deadline ends the read.
	r.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := readQuiet(r, buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read of a quiet socket: %v, want a deadline error", err)
	}
	r.SetReadDeadline(time.Time{})
	// The peer closes: the reader sees the end.
	w.Close()
	if _, err := readQuiet(r, buf); err != io.EOF {
		t.Fatalf("read after close: %v, want EOF", err)
	}
}
