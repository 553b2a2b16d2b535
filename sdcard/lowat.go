package sdcard

import (
	"errors"
	"net"
	"os"
	"sync"
	"time"
)

// lowatConn is the TCP connection under TLS. While a round streams
// whole blocks to this node (bulk), it asks the kernel to wake the reader
// only when lowatBytes are queued (SO_RCVLOWAT), so that the receiver,
// faster than the line, does not read a few packets per wake-up. The
// stream's end (fewer bytes than that) and any pause are caught by a
// short read deadline: after lowatWait without a wake-up the read falls
// back to waking on any byte, and the mark is raised again after it.
type lowatConn struct {
	net.Conn
	mu    sync.Mutex
	bulk  bool
	set   bool      // SO_RCVLOWAT is lowatBytes now
	outer time.Time // the deadline the caller set
}

const (
	lowatBytes = 256 << 10
	lowatWait  = 20 * time.Millisecond
)

func newLowatConn(c net.Conn) net.Conn {
	if _, ok := c.(*net.TCPConn); !ok {
		return c
	}
	return &lowatConn{Conn: c}
}

// setBulk starts or ends the bulk reading.
func (c *lowatConn) setBulk(on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.bulk = on
	if !on && c.set {
		c.set = false
		setRcvLowat(c.Conn, 1)
		c.Conn.SetReadDeadline(c.outer)
	}
}

func (c *lowatConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.outer = t
	c.mu.Unlock()
	return c.Conn.SetReadDeadline(t)
}

func (c *lowatConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	c.outer = t
	c.mu.Unlock()
	return c.Conn.SetDeadline(t)
}

func (c *lowatConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	if !c.bulk {
		c.mu.Unlock()
		return c.Conn.Read(p)
	}
	outer := c.outer
	if !c.set {
		c.set = setRcvLowat(c.Conn, lowatBytes) == nil
	}
	c.mu.Unlock()
	soon := time.Now().Add(lowatWait)
	if !outer.IsZero() && outer.Before(soon) {
		c.Conn.SetReadDeadline(outer)
		return c.Conn.Read(p)
	}
	c.Conn.SetReadDeadline(soon)
	n, err := c.Conn.Read(p)
	if n > 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		return n, err
	}
	// Nothing for lowatWait: the end of the stream or a pause.
	c.mu.Lock()
	if c.set {
		setRcvLowat(c.Conn, 1)
		c.set = false
	}
	c.Conn.SetReadDeadline(c.outer)
	c.mu.Unlock()
	return c.Conn.Read(p)
}

// bulkReader is the lowatConn under a session's connection, if any.
func bulkReader(c net.Conn) *lowatConn {
	if nc, ok := c.(interface{ NetConn() net.Conn }); ok {
		c = nc.NetConn()
	}
	lc, _ := c.(*lowatConn)
	return lc
}
