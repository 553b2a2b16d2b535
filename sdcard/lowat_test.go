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

// In bulk mode a stream's tail, shorter than the wake-up mark, still
// arrives (the read falls back after lowatWait instead of stalling), the
// caller's deadline still ends a read, and the bytes come in order.
func TestLowatConnTail(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	w, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	raw, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c, ok := newLowatConn(raw).(*lowatConn)
	if !ok {
		t.Fatal("no lowatConn over TCP")
	}
	defer c.Close()
	c.setBulk(true)
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
	c.setBulk(false)
	c.SetReadDeadline(time.Time{})
	go w.Write([]byte("x"))
	if n, err := c.Read(got); err != nil || n != 1 {
		t.Fatalf("read after bulk: %d, %v", n, err)
	}
}
