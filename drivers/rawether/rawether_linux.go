//go:build linux

package rawether

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jsimonetti/rtnetlink"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/netlink"
	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"
)

const headerLen = 14 // destination, source, EtherType

// conn is a Conn on an AF_PACKET SOCK_RAW socket.
type conn struct {
	c     *packet.Conn
	rc    syscall.RawConn
	mac   net.HardwareAddr
	etype ethernet.EtherType
	mtu   int
	name  string

	closed atomic.Bool

	wmu     sync.Mutex
	wbuf    []byte // header and payload of the frame being sent
	werr    error
	writeFn func(fd uintptr) bool // c.write, bound once so Send does not allocate

	rmu    sync.Mutex
	rbuf   []byte // the frame being received; VLAN tags are removed by the kernel
	rn     int
	rerr   error
	readFn func(fd uintptr) bool // c.read, bound once
}

// Listen opens a raw Ethernet socket on interface ifname that receives the
// frames of etherType addressed to the interface (unicast or broadcast).
// It needs CAP_NET_RAW.
func Listen(ifname string, etherType uint16) (Conn, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("rawether: %w", err)
	}
	if len(ifi.HardwareAddr) != 6 {
		return nil, fmt.Errorf("rawether: %s is not an Ethernet interface (hardware address %q)", ifname, ifi.HardwareAddr)
	}
	pc, err := packet.Listen(ifi, packet.Raw, int(etherType), nil)
	if err != nil {
		return nil, fmt.Errorf("rawether: listen on %s: %w", ifname, err)
	}
	rc, err := pc.SyscallConn()
	if err != nil {
		return nil, errors.Join(fmt.Errorf("rawether: %s: %w", ifname, err), pc.Close())
	}
	// Do not receive the frames that leave this host on the interface
	// (Linux 4.20 and later). On older kernels Recv drops frames whose
	// source is our own address.
	_ = rc.Control(func(fd uintptr) {
		_ = unix.SetsockoptInt(int(fd), unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1)
	})
	mtu := ifi.MTU
	if mtu <= 0 {
		mtu = 1500
	}
	c := &conn{
		c:     pc,
		rc:    rc,
		mac:   bytes.Clone(ifi.HardwareAddr),
		etype: ethernet.EtherType(etherType),
		mtu:   mtu,
		name:  ifname,
		wbuf:  make([]byte, 0, headerLen+mtu),
		rbuf:  make([]byte, headerLen+mtu),
	}
	c.writeFn = c.write
	c.readFn = c.read
	return c, nil
}

func (c *conn) Addr() net.HardwareAddr { return bytes.Clone(c.mac) }

func (c *conn) SetReadDeadline(t time.Time) error { return c.c.SetReadDeadline(t) }

func (c *conn) Close() error {
	c.closed.Store(true)
	if err := c.c.Close(); err != nil {
		return fmt.Errorf("rawether: close %s: %w", c.name, err)
	}
	return nil
}

func (c *conn) Send(dst net.HardwareAddr, payload []byte) error {
	if len(dst) != 6 {
		return fmt.Errorf("rawether: send on %s: bad destination %q", c.name, dst)
	}
	if len(payload) > c.mtu {
		return fmt.Errorf("rawether: send on %s: payload of %d bytes exceeds MTU %d", c.name, len(payload), c.mtu)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	b := append(c.wbuf[:0], dst...)
	b = append(b, c.mac...)
	b = binary.BigEndian.AppendUint16(b, uint16(c.etype))
	c.wbuf = append(b, payload...)
	c.werr = nil
	// The socket is bound to the interface and the EtherType: write(2)
	// needs no address, and the bound closure does not allocate.
	if err := c.rc.Write(c.writeFn); err != nil {
		return fmt.Errorf("rawether: send on %s: %w", c.name, c.closedErr(err))
	}
	if c.werr != nil {
		return fmt.Errorf("rawether: send on %s: %w", c.name, os.NewSyscallError("write", c.werr))
	}
	return nil
}

// closedErr makes the error of an operation on a closed Conn ("use of
// closed file" from the poller) match net.ErrClosed, as for net.Conn.
func (c *conn) closedErr(err error) error {
	if c.closed.Load() && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("%w: %w", net.ErrClosed, err)
	}
	return err
}

// write runs inside RawConn.Write; it returns false to wait for the socket
// to become writable.
func (c *conn) write(fd uintptr) bool {
	_, err := unix.Write(int(fd), c.wbuf)
	if err == unix.EAGAIN || err == unix.EINTR {
		return false
	}
	c.werr = err
	return true
}

func (c *conn) Recv(buf []byte) (int, net.HardwareAddr, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for {
		c.rn, c.rerr = 0, nil
		// read(2) on the bound socket through the poller: deadlines and
		// Close apply, and nothing is allocated per frame.
		if err := c.rc.Read(c.readFn); err != nil {
			return 0, nil, fmt.Errorf("rawether: recv on %s: %w", c.name, c.closedErr(err))
		}
		if c.rerr != nil {
			return 0, nil, fmt.Errorf("rawether: recv on %s: %w", c.name, os.NewSyscallError("read", c.rerr))
		}
		b := c.rbuf[:c.rn]
		if len(b) < headerLen {
			continue // runt frame
		}
		src := b[6:12]
		if ethernet.EtherType(binary.BigEndian.Uint16(b[12:14])) != c.etype || bytes.Equal(src, c.mac) {
			continue // not ours, or our own frame looped back
		}
		payload := b[headerLen:]
		m := copy(buf, payload)
		if m < len(payload) {
			return m, bytes.Clone(src), fmt.Errorf("rawether: recv on %s: payload of %d bytes truncated to %d", c.name, len(payload), m)
		}
		return m, bytes.Clone(src), nil
	}
}

// read runs inside RawConn.Read; it returns false to wait for a frame.
func (c *conn) read(fd uintptr) bool {
	n, err := unix.Read(int(fd), c.rbuf)
	if err == unix.EAGAIN || err == unix.EINTR {
		return false
	}
	c.rn, c.rerr = n, err
	return true
}

// WatchLink reports the link state of interface ifname: first its current
// state, then every change. A missing interface is reported down, and up
// again when it appears under that name. The channel is closed when ctx is
// done or the netlink socket fails.
func WatchLink(ctx context.Context, ifname string) (<-chan LinkEvent, error) {
	// Subscribe before listing, so no change falls between the two.
	nc, err := rtnetlink.Dial(&netlink.Config{Groups: unix.RTMGRP_LINK})
	if err != nil {
		return nil, fmt.Errorf("rawether: watch %s: %w", ifname, err)
	}
	lc, err := rtnetlink.Dial(nil)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("rawether: watch %s: %w", ifname, err), nc.Close())
	}
	up, err := linkState(lc, ifname)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("rawether: watch %s: %w", ifname, err), nc.Close(), lc.Close())
	}

	events := make(chan LinkEvent, 1)
	events <- LinkEvent{Name: ifname, Up: up}
	stop := context.AfterFunc(ctx, func() { _ = nc.SetReadDeadline(time.Unix(1, 0)) })
	go func() {
		defer close(events)
		defer stop()
		defer nc.Close()
		defer lc.Close()
		for {
			msgs, nms, err := nc.Receive()
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				if !errors.Is(err, unix.ENOBUFS) {
					return
				}
				// The kernel dropped messages: read the state again.
				now, err := linkState(lc, ifname)
				if err != nil {
					return
				}
				if now != up {
					up = now
					if !send(ctx, events, LinkEvent{Name: ifname, Up: up}) {
						return
					}
				}
				continue
			}
			for i, m := range msgs {
				lm, ok := m.(*rtnetlink.LinkMessage)
				if !ok || lm.Attributes == nil || lm.Attributes.Name != ifname {
					continue
				}
				now := nms[i].Header.Type != unix.RTM_DELLINK && linkUp(lm)
				if now == up {
					continue
				}
				up = now
				if !send(ctx, events, LinkEvent{Name: ifname, Up: up}) {
					return
				}
			}
		}
	}()
	return events, nil
}

func send(ctx context.Context, ch chan<- LinkEvent, e LinkEvent) bool {
	select {
	case ch <- e:
		return true
	case <-ctx.Done():
		return false
	}
}

// linkState returns whether ifname is up; a missing interface is down.
func linkState(c *rtnetlink.Conn, ifname string) (bool, error) {
	links, err := c.Link.List()
	if err != nil {
		return false, err
	}
	for i := range links {
		if links[i].Attributes != nil && links[i].Attributes.Name == ifname {
			return linkUp(&links[i]), nil
		}
	}
	return false, nil
}

func linkUp(m *rtnetlink.LinkMessage) bool {
	if m.Flags&unix.IFF_UP == 0 || m.Flags&unix.IFF_LOWER_UP == 0 {
		return false
	}
	if m.Attributes != nil {
		switch m.Attributes.OperationalState {
		case rtnetlink.OperStateDown, rtnetlink.OperStateLowerLayerDown, rtnetlink.OperStateNotPresent:
			return false
		}
	}
	return true
}
