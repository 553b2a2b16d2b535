package sdcard

import (
	"errors"
	"io"
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
//
// In bulk mode the socket is also read lowatBytes at a time into a
// buffer that serves the TLS layer's reads (crypto/tls reads about one
// record per call): a system call per wake-up instead of one per 16 KiB
// record, which on this kind of machine costs more than the copy it
// adds (issue 15). Bulk mode has one reader, the round's goroutine, so
// a deadline it sets takes effect at its next read of the socket.
type lowatConn struct {
	net.Conn
	mu     sync.Mutex
	bulk   bool
	set    bool      // SO_RCVLOWAT is lowatBytes now
	outer  time.Time // the deadline the caller set
	nobuf  bool      // bulk reads go straight to the caller's buffer
	rmem   []byte    // the read buffer, lowatBytes, while bulk or unread
	rbuf   []byte    // its unread bytes
	reads  int       // reads of the socket in bulk mode (tests)
	served int       // reads served from rbuf (tests)

	// writes held while gathering (see gatherWriter)
	wmu       sync.Mutex
	gathering bool
	wbuf      []byte
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

// setBulk starts or ends the bulk reading; buffered says whether its
// reads go through the read buffer.
func (c *lowatConn) setBulk(on, buffered bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.bulk, c.nobuf = on, !buffered
	if !on {
		if c.set {
			c.set = false
			setRcvLowat(c.Conn, 1)
		}
		c.Conn.SetReadDeadline(c.outer)
		if len(c.rbuf) == 0 {
			c.rmem, c.rbuf = nil, nil
		}
	}
}

func (c *lowatConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.outer = t
	if c.bulk { // set at the next read of the socket
		return nil
	}
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
	if len(c.rbuf) > 0 {
		n := copy(p, c.rbuf)
		c.rbuf = c.rbuf[n:]
		c.served++
		if len(c.rbuf) == 0 && !c.bulk {
			c.rmem, c.rbuf = nil, nil
		}
		c.mu.Unlock()
		return n, nil
	}
	if !c.bulk {
		c.mu.Unlock()
		return c.Conn.Read(p)
	}
	outer := c.outer
	if !c.set {
		c.set = setRcvLowat(c.Conn, lowatBytes) == nil
	}
	dst := p
	buffered := !c.nobuf && len(p) < lowatBytes
	if buffered {
		if c.rmem == nil {
			c.rmem = make([]byte, lowatBytes)
		}
		dst = c.rmem
	}
	c.reads++
	c.mu.Unlock()
	n, err := c.readBulk(dst, outer)
	if !buffered || n == 0 {
		return n, err
	}
	c.mu.Lock()
	k := copy(p, dst[:n])
	c.rbuf = dst[k:n]
	c.mu.Unlock()
	return k, err
}

// readBulk reads the socket in bulk mode into p, with the caller's
// deadline outer.
func (c *lowatConn) readBulk(p []byte, outer time.Time) (int, error) {
	soon := time.Now().Add(lowatWait)
	if !outer.IsZero() && outer.Before(soon) {
		c.Conn.SetReadDeadline(outer)
		return readQuiet(c.Conn, p)
	}
	c.Conn.SetReadDeadline(soon)
	n, err := readQuiet(c.Conn, p)
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
	return readQuiet(c.Conn, p)
}

// bulkReader is the lowatConn under a session's connection, if any.
func bulkReader(c net.Conn) *lowatConn {
	if nc, ok := c.(interface{ NetConn() net.Conn }); ok {
		c = nc.NetConn()
	}
	lc, _ := c.(*lowatConn)
	return lc
}

// The TLS records of one write (crypto/tls writes each record of at most
// 16 KiB with a system call of its own) are gathered and sent with one
// system call: gatherWriter turns the gathering on around each write to
// the TLS connection, and the lowatConn under it holds the records until
// the write returns. Records that crypto/tls writes by itself meanwhile
// (an alert, a key update) keep their order in the same buffer.
type gatherWriter struct {
	tc io.Writer
	lc *lowatConn
}

// gatherMax bounds the bytes held: a frame writer's flush (128 KiB of
// frames) with its record overhead fits.
const gatherMax = 160 << 10

// newGatherWriter returns w (the TLS connection over c) writing through
// gathered records, or w itself when c has no lowatConn under it.
func newGatherWriter(w io.Writer, c net.Conn) io.Writer {
	lc := bulkReader(c)
	if lc == nil {
		return w
	}
	return &gatherWriter{tc: w, lc: lc}
}

func (g *gatherWriter) Write(p []byte) (int, error) {
	g.lc.gather(true)
	n, err := g.tc.Write(p)
	if ferr := g.lc.gather(false); err == nil {
		err = ferr
	}
	return n, err
}

// gather starts holding writes, or ends it and sends what it holds.
func (c *lowatConn) gather(on bool) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.gathering = on
	if on || len(c.wbuf) == 0 {
		return nil
	}
	return c.sendHeld()
}

// sendHeld writes the held bytes; c.wmu is held.
func (c *lowatConn) sendHeld() error {
	_, err := c.Conn.Write(c.wbuf)
	c.wbuf = c.wbuf[:0]
	return err
}

func (c *lowatConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if !c.gathering {
		return c.Conn.Write(p)
	}
	if len(c.wbuf)+len(p) > gatherMax {
		if err := c.sendHeld(); err != nil {
			return 0, err
		}
		if len(p) > gatherMax {
			return c.Conn.Write(p)
		}
	}
	if c.wbuf == nil {
		c.wbuf = make([]byte, 0, gatherMax)
	}
	c.wbuf = append(c.wbuf, p...)
	return len(p), nil
}
