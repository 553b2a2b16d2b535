package online

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
)

// Client is a minimal NBD client (fixed newstyle, NBD_OPT_EXPORT_NAME,
// one request at a time, or a batch of writes in flight together):
// enough to know exactly which writes the server acknowledged.
type Client struct {
	c      net.Conn
	Size   uint64
	cookie uint64
}

// Dial connects to the export on a Unix socket.
func Dial(sock string) (*Client, error) {
	c, err := net.Dial("unix", sock)
	if err != nil {
		return nil, err
	}
	cl := &Client{c: c}
	if err := cl.handshake(); err != nil {
		c.Close()
		return nil, err
	}
	return cl, nil
}

func (cl *Client) handshake() error {
	var hello [18]byte
	if _, err := io.ReadFull(cl.c, hello[:]); err != nil {
		return err
	}
	if string(hello[:8]) != "NBDMAGIC" || binary.BigEndian.Uint64(hello[8:]) != 0x49484156454F5054 {
		return errors.New("nbd: bad greeting")
	}
	b := binary.BigEndian.AppendUint32(nil, 3) // FIXED_NEWSTYLE | NO_ZEROES
	b = binary.BigEndian.AppendUint64(b, 0x49484156454F5054)
	b = binary.BigEndian.AppendUint32(b, 1) // NBD_OPT_EXPORT_NAME
	b = binary.BigEndian.AppendUint32(b, 0) // ""
	if _, err := cl.c.Write(b); err != nil {
		return err
	}
	var info [10]byte
	if _, err := io.ReadFull(cl.c, info[:]); err != nil {
		return err
	}
	cl.Size = binary.BigEndian.Uint64(info[:])
	return nil
}

const (
	cmdRead  = 0
	cmdWrite = 1
	cmdFlush = 3
	flagFUA  = 1
)

func (cl *Client) do(typ, flags uint16, off uint64, length uint32, data, into []byte) error {
	cl.cookie++
	b := binary.BigEndian.AppendUint32(nil, 0x25609513)
	b = binary.BigEndian.AppendUint16(b, flags)
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint64(b, cl.cookie)
	b = binary.BigEndian.AppendUint64(b, off)
	b = binary.BigEndian.AppendUint32(b, length)
	if _, err := cl.c.Write(append(b, data...)); err != nil {
		return err
	}
	var r [16]byte
	if _, err := io.ReadFull(cl.c, r[:]); err != nil {
		return err
	}
	if binary.BigEndian.Uint32(r[:]) != 0x67446698 || binary.BigEndian.Uint64(r[8:]) != cl.cookie {
		return errors.New("nbd: bad reply")
	}
	if e := binary.BigEndian.Uint32(r[4:]); e != 0 {
		return fmt.Errorf("nbd: error %d", e)
	}
	if into != nil {
		_, err := io.ReadFull(cl.c, into)
		return err
	}
	return nil
}

// Write writes p at off; a nil error means the server acknowledged it.
func (cl *Client) Write(p []byte, off uint64, fua bool) error {
	var f uint16
	if fua {
		f = flagFUA
	}
	return cl.do(cmdWrite, f, off, uint32(len(p)), p, nil)
}

// BatchWrite is one write of a batch.
type BatchWrite struct {
	Off  uint64
	Data []byte
	FUA  bool
	// Acked is set when the server answered the write without error.
	Acked bool
}

// WriteBatch sends every write of ws at once (all in flight together),
// then reads the replies, which may come in any order, and marks the
// writes acknowledged. It returns the first error (a connection that
// ends mid-batch leaves the unanswered writes unacknowledged).
func (cl *Client) WriteBatch(ws []BatchWrite) error {
	first := cl.cookie + 1
	var b []byte
	for i := range ws {
		w := &ws[i]
		w.Acked = false
		var f uint16
		if w.FUA {
			f = flagFUA
		}
		cl.cookie++
		b = binary.BigEndian.AppendUint32(b, 0x25609513)
		b = binary.BigEndian.AppendUint16(b, f)
		b = binary.BigEndian.AppendUint16(b, cmdWrite)
		b = binary.BigEndian.AppendUint64(b, cl.cookie)
		b = binary.BigEndian.AppendUint64(b, w.Off)
		b = binary.BigEndian.AppendUint32(b, uint32(len(w.Data)))
		b = append(b, w.Data...)
	}
	if _, err := cl.c.Write(b); err != nil {
		return err
	}
	var firstErr error
	for range ws {
		var r [16]byte
		if _, err := io.ReadFull(cl.c, r[:]); err != nil {
			return err
		}
		i := binary.BigEndian.Uint64(r[8:]) - first
		if binary.BigEndian.Uint32(r[:]) != 0x67446698 || i >= uint64(len(ws)) || ws[i].Acked {
			return errors.New("nbd: bad reply")
		}
		if e := binary.BigEndian.Uint32(r[4:]); e != 0 {
			if firstErr == nil {
				firstErr = fmt.Errorf("nbd: error %d", e)
			}
			continue
		}
		ws[i].Acked = true
	}
	return firstErr
}

// Read reads len(p) bytes at off.
func (cl *Client) Read(p []byte, off uint64) error {
	return cl.do(cmdRead, 0, off, uint32(len(p)), nil, p)
}

// Flush sends NBD_CMD_FLUSH.
func (cl *Client) Flush() error { return cl.do(cmdFlush, 0, 0, 0, nil, nil) }

// Close closes the connection without NBD_CMD_DISC.
func (cl *Client) Close() error { return cl.c.Close() }
