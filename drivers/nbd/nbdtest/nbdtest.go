// Package nbdtest is a fake of the kernel's NBD driver for daemon tests.
// [Fake] implements nbd.Attacher and plays the kernel's NBD client on the
// sockets it is handed (transmission phase only, simple replies, one
// request at a time per device, live sockets used in turn), so a test that
// reads and writes a [Device] goes through the real server, as I/O on
// /dev/nbdN would.
//
// It keeps the kernel's rules that the daemon depends on (drivers/nbd's
// doc): a socket whose server end closed is dead, and a request goes to
// the next live one; with none alive a request waits up to the
// dead-connection timeout for a RECONFIGURE, then fails; RECONFIGURE
// needs the identifier the device was connected with (EINVAL) and gives
// a socket only to a dead connection, dropping the others silently.
package nbdtest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/pairguard/pairguard/drivers/nbd"
)

// Errors the fake returns like the kernel does.
var (
	ErrBusy         = syscall.EBUSY  // CONNECT to a device in use
	ErrNoDevice     = syscall.ENODEV // no such device, or not connected
	ErrDisconnected = syscall.EIO    // I/O on a disconnected device
)

// Fake is an in-memory NBD driver.
type Fake struct {
	mu      sync.Mutex
	devices map[int]*Device
	calls   []string

	// ConnectErr, ReconfigureErr and DisconnectErr, when set, are
	// returned by the next calls instead of doing anything.
	ConnectErr, ReconfigureErr, DisconnectErr error
}

var _ nbd.Attacher = (*Fake)(nil)

// New returns a fake driver with no devices.
func New() *Fake { return &Fake{devices: map[int]*Device{}} }

// Calls returns the calls so far, e.g. "connect 0", "reconfigure 0",
// "disconnect 0".
func (f *Fake) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

// Device returns device index, or nil if it was never connected.
func (f *Fake) Device(index int) *Device {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.devices[index]
}

// Connect implements nbd.Attacher. It takes its own copies of the
// sockets, as the kernel does.
func (f *Fake) Connect(cfg nbd.Config, socks []*os.File) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ConnectErr != nil {
		return 0, f.ConnectErr
	}
	if cfg.Size == 0 || len(socks) == 0 {
		return 0, syscall.EINVAL
	}
	idx := cfg.Index
	if idx < 0 {
		for idx = 0; f.devices[idx] != nil && f.devices[idx].Connected(); idx++ {
		}
	} else if d := f.devices[idx]; d != nil && d.Connected() {
		return 0, ErrBusy
	}
	conns, err := dup(socks)
	if err != nil {
		return 0, err
	}
	f.devices[idx] = &Device{cfg: cfg, conns: conns, connected: true, revived: make(chan struct{})}
	f.calls = append(f.calls, fmt.Sprintf("connect %d", idx))
	return idx, nil
}

// Reconfigure implements nbd.Attacher: each socket takes the place of a
// dead connection; a socket for which none is left is dropped.
func (f *Fake) Reconfigure(index int, r nbd.Reconfig, socks []*os.File) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ReconfigureErr != nil {
		return f.ReconfigureErr
	}
	d := f.devices[index]
	if d == nil || !d.Connected() {
		return ErrNoDevice
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cfg.Identifier != "" && r.Identifier != d.cfg.Identifier {
		return syscall.EINVAL
	}
	d.probeLocked()
	for _, s := range socks {
		slot := slices.Index(d.conns, nil)
		if slot < 0 {
			break // the kernel's ENOSPC, reported as success
		}
		c, err := dup([]*os.File{s})
		if err != nil {
			return err
		}
		d.conns[slot] = c[0]
		d.taken++
	}
	if r.DeadConnTimeout > 0 {
		d.cfg.DeadConnTimeout = r.DeadConnTimeout
	}
	close(d.revived)
	d.revived = make(chan struct{})
	f.calls = append(f.calls, fmt.Sprintf("reconfigure %d", index))
	return nil
}

// Disconnect implements nbd.Attacher: NBD_CMD_DISC on every socket, then
// they are closed.
func (f *Fake) Disconnect(index int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.DisconnectErr != nil {
		return f.DisconnectErr
	}
	d := f.devices[index]
	if d == nil || !d.Connected() {
		return ErrNoDevice
	}
	d.mu.Lock()
	for _, c := range d.conns {
		if c != nil {
			c.Write(header(cmdDisc, 0, 0, 0, 0))
			c.Close()
		}
	}
	d.conns, d.connected = nil, false
	close(d.revived) // a request waiting for a connection fails now
	d.revived = make(chan struct{})
	d.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf("disconnect %d", index))
	return nil
}

// Identifier implements nbd.Attacher.
func (f *Fake) Identifier(index int) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if d := f.devices[index]; d != nil && d.Connected() {
		return d.Config().Identifier, nil
	}
	return "", nil
}

// Status implements nbd.Attacher.
func (f *Fake) Status(index int) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.devices[index]
	return d != nil && d.Connected(), nil
}

// Close implements nbd.Attacher; devices stay attached, as in the kernel.
func (f *Fake) Close() error { return nil }

func dup(socks []*os.File) ([]net.Conn, error) {
	conns := make([]net.Conn, 0, len(socks))
	for _, s := range socks {
		c, err := net.FileConn(s)
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			return nil, err
		}
		conns = append(conns, c)
	}
	return conns, nil
}

// Device is a fake /dev/nbdN.
type Device struct {
	mu        sync.Mutex
	cfg       nbd.Config
	conns     []net.Conn // nil: a dead connection
	connected bool
	cookie    uint64
	next      int
	taken     int           // sockets taken by RECONFIGURE
	revived   chan struct{} // closed at a RECONFIGURE or DISCONNECT
}

// Reconnected returns how many sockets RECONFIGURE has put in place of
// dead connections.
func (d *Device) Reconnected() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.taken
}

// Live returns how many connections are alive (their server end open,
// as far as the fake has seen).
func (d *Device) Live() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.probeLocked()
	n := 0
	for _, c := range d.conns {
		if c != nil {
			n++
		}
	}
	return n
}

// probeLocked marks dead the connections whose server end has closed
// (the kernel's receive thread sees the end of the stream). Nothing else
// can arrive: the server only answers requests, and they are answered
// before request returns.
func (d *Device) probeLocked() {
	var b [1]byte
	for i, c := range d.conns {
		if c == nil {
			continue
		}
		c.SetReadDeadline(time.Now().Add(time.Millisecond))
		_, err := c.Read(b[:])
		c.SetReadDeadline(time.Time{})
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			continue
		}
		c.Close()
		d.conns[i] = nil
	}
}

// Drop closes connection i as the kernel does when a request on it timed
// out: the server's end sees it closed.
func (d *Device) Drop(i int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.deadLocked(i)
}

// dead marks connection i dead after a failed exchange.
func (d *Device) deadLocked(i int) {
	if d.conns[i] != nil {
		d.conns[i].Close()
		d.conns[i] = nil
	}
}

// Config returns the configuration it was connected with.
func (d *Device) Config() nbd.Config {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg
}

// Connected reports whether the device is attached.
func (d *Device) Connected() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.connected
}

const (
	cmdRead        = 0
	cmdWrite       = 1
	cmdDisc        = 2
	cmdFlush       = 3
	cmdTrim        = 4
	cmdWriteZeroes = 6
	flagFUA        = 1
)

func header(typ, flags uint16, cookie, off uint64, n uint32) []byte {
	b := binary.BigEndian.AppendUint32(make([]byte, 0, 28), 0x25609513)
	b = binary.BigEndian.AppendUint16(b, flags)
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint64(b, cookie)
	b = binary.BigEndian.AppendUint64(b, off)
	return binary.BigEndian.AppendUint32(b, n)
}

// request sends one request on the next live socket and waits for its
// reply. A socket that fails is dead and the request goes to the next;
// with none alive it waits for a RECONFIGURE, up to the dead-connection
// timeout.
func (d *Device) request(typ, flags uint16, off int64, n int, payload, into []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if off < 0 || uint64(off)+uint64(n) > d.cfg.Size {
		return syscall.EINVAL
	}
	var waited time.Duration
	for {
		if !d.connected {
			return ErrDisconnected
		}
		for range d.conns {
			i := d.next % len(d.conns)
			d.next++
			if d.conns[i] == nil {
				continue
			}
			err := d.exchangeLocked(d.conns[i], typ, flags, off, n, payload, into)
			if !errors.Is(err, errBroken) {
				return err
			}
			d.deadLocked(i)
		}
		if waited >= d.cfg.DeadConnTimeout {
			return fmt.Errorf("nbdtest: %w: no live connection", ErrDisconnected)
		}
		ch, left := d.revived, d.cfg.DeadConnTimeout-waited
		d.mu.Unlock()
		t0 := time.Now()
		select {
		case <-ch:
		case <-time.After(left):
		}
		waited += time.Since(t0)
		d.mu.Lock()
	}
}

var errBroken = errors.New("nbdtest: connection broken")

func (d *Device) exchangeLocked(c net.Conn, typ, flags uint16, off int64, n int, payload, into []byte) error {
	d.cookie++
	if _, err := c.Write(append(header(typ, flags, d.cookie, uint64(off), uint32(n)), payload...)); err != nil {
		return fmt.Errorf("%w: %w", errBroken, err)
	}
	var r [16]byte
	if _, err := io.ReadFull(c, r[:]); err != nil {
		return fmt.Errorf("%w: %w", errBroken, err)
	}
	if binary.BigEndian.Uint32(r[:]) != 0x67446698 || binary.BigEndian.Uint64(r[8:]) != d.cookie {
		return fmt.Errorf("nbdtest: reply % x to cookie %d", r, d.cookie)
	}
	if errno := binary.BigEndian.Uint32(r[4:]); errno != 0 {
		return syscall.Errno(errno)
	}
	if typ == cmdRead {
		if _, err := io.ReadFull(c, into); err != nil {
			return fmt.Errorf("%w: %w", errBroken, err)
		}
	}
	return nil
}

// ReadAt reads through the server.
func (d *Device) ReadAt(p []byte, off int64) (int, error) {
	if err := d.request(cmdRead, 0, off, len(p), nil, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// WriteAt writes through the server.
func (d *Device) WriteAt(p []byte, off int64) (int, error) {
	if err := d.request(cmdWrite, 0, off, len(p), p, nil); err != nil {
		return 0, err
	}
	return len(p), nil
}

// WriteAtFUA writes with NBD_CMD_FLAG_FUA, as the kernel does for a
// REQ_FUA bio.
func (d *Device) WriteAtFUA(p []byte, off int64) (int, error) {
	if err := d.request(cmdWrite, flagFUA, off, len(p), p, nil); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Flush sends NBD_CMD_FLUSH, as fsync on the device does.
func (d *Device) Flush() error { return d.request(cmdFlush, 0, 0, 0, nil, nil) }

// Trim sends NBD_CMD_TRIM (a discard).
func (d *Device) Trim(off, n int64) error { return d.request(cmdTrim, 0, off, int(n), nil, nil) }

// Zero sends NBD_CMD_WRITE_ZEROES.
func (d *Device) Zero(off, n int64) error {
	return d.request(cmdWriteZeroes, 0, off, int(n), nil, nil)
}
