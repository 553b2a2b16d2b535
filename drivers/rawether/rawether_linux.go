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
	"unsafe"

	"github.com/jsimonetti/rtnetlink"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/netlink"
	"github.com/mdlayher/packet"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

const headerLen = 14 // destination, source, EtherType

// conn is a Conn on an AF_PACKET SOCK_RAW socket.
type conn struct {
	name   string
	etype  ethernet.EtherType
	filter []bpf.RawInstruction

	closed atomic.Bool

	smu sync.Mutex // guards s and serialises Refresh
	s   *sock

	wmu     sync.Mutex
	wbuf    []byte // header and payload of the frame being sent
	werr    error
	writeFn func(fd uintptr) bool // c.write, bound once so Send does not allocate

	rmu    sync.Mutex
	rbuf   []byte // the frame being received; VLAN tags are removed by the kernel
	rn     int
	src    net.HardwareAddr // the source of the frame Recv returned last
	rerr   error
	readFn func(fd uintptr) bool // c.read, bound once
}

// sock is the socket on one incarnation of the interface.
type sock struct {
	pc    *packet.Conn
	rc    syscall.RawConn
	index int
	mac   net.HardwareAddr
	mtu   int
}

// Listen opens a raw Ethernet socket on interface ifname that receives the
// frames of etherType addressed to the interface (unicast or broadcast)
// that filter accepts (nil: all). It needs CAP_NET_RAW.
func Listen(ifname string, etherType uint16, filter *Filter) (Conn, error) {
	prog, err := assemble(etherType, filter)
	if err != nil {
		return nil, fmt.Errorf("rawether: filter: %w", err)
	}
	c := &conn{name: ifname, etype: ethernet.EtherType(etherType), filter: prog}
	s, err := c.open()
	if err != nil {
		return nil, err
	}
	c.s = s
	c.wbuf = make([]byte, 0, headerLen+s.mtu)
	c.rbuf = make([]byte, headerLen+s.mtu)
	c.writeFn = c.write
	c.readFn = c.read
	return c, nil
}

// open opens a socket on the interface now named c.name.
func (c *conn) open() (*sock, error) {
	ifi, err := net.InterfaceByName(c.name)
	if err != nil {
		return nil, fmt.Errorf("rawether: %w: %w", ErrNoInterface, err)
	}
	if len(ifi.HardwareAddr) != 6 {
		return nil, fmt.Errorf("rawether: %s is not an Ethernet interface (hardware address %q)", c.name, ifi.HardwareAddr)
	}
	// The filter is attached before the socket is bound: no frame it
	// refuses is ever queued.
	pc, err := packet.Listen(ifi, packet.Raw, int(c.etype), &packet.Config{Filter: c.filter})
	if err != nil {
		return nil, fmt.Errorf("rawether: listen on %s: %w", c.name, err)
	}
	rc, err := pc.SyscallConn()
	if err != nil {
		return nil, errors.Join(fmt.Errorf("rawether: %s: %w", c.name, err), pc.Close())
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
	return &sock{pc: pc, rc: rc, index: ifi.Index, mac: bytes.Clone(ifi.HardwareAddr), mtu: mtu}, nil
}

// assemble builds the socket filter: the EtherType, then filter's
// conditions on the payload. The kernel runs it on the whole frame, VLAN
// tag removed.
func assemble(etherType uint16, f *Filter) ([]bpf.RawInstruction, error) {
	if f == nil {
		return nil, nil
	}
	var prog []bpf.Instruction
	// Each test jumps to the final "drop" when it fails; the skip is filled
	// in once the length of the program is known.
	var fails []int
	test := func(load bpf.Instruction, cond bpf.JumpTest, val uint32) {
		prog = append(prog, load)
		fails = append(fails, len(prog))
		prog = append(prog, bpf.JumpIf{Cond: cond, Val: val})
	}
	test(bpf.LoadAbsolute{Off: 12, Size: 2}, bpf.JumpEqual, uint32(etherType))
	if f.MinLen > 0 {
		test(bpf.LoadExtension{Num: bpf.ExtLen}, bpf.JumpGreaterOrEqual, uint32(headerLen+f.MinLen))
	}
	if f.MaxLen > 0 {
		test(bpf.LoadExtension{Num: bpf.ExtLen}, bpf.JumpLessOrEqual, uint32(headerLen+f.MaxLen))
	}
	for _, m := range f.Match {
		if m.Offset < 0 {
			return nil, fmt.Errorf("negative offset %d", m.Offset)
		}
		for i := 0; i < len(m.Value); {
			size := min(4, len(m.Value)-i)
			if size == 3 {
				size = 2
			}
			var v uint32
			for _, b := range m.Value[i : i+size] {
				v = v<<8 | uint32(b)
			}
			test(bpf.LoadAbsolute{Off: uint32(headerLen + m.Offset + i), Size: size}, bpf.JumpEqual, v)
			i += size
		}
	}
	for _, l := range f.Lengths {
		if l.Offset < 0 {
			return nil, fmt.Errorf("negative offset %d", l.Offset)
		}
		// A payload too short to hold the byte fails the load: dropped, as
		// Accepts does only when the filter's other conditions need it.
		prog = append(prog,
			bpf.LoadAbsolute{Off: uint32(headerLen + l.Offset), Size: 1},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(l.Value), SkipFalse: 2},
			bpf.LoadExtension{Num: bpf.ExtLen})
		fails = append(fails, len(prog))
		prog = append(prog, bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(headerLen + l.Len)})
	}
	prog = append(prog, bpf.RetConstant{Val: 0x40000}, bpf.RetConstant{Val: 0})
	drop := len(prog) - 1
	for _, i := range fails {
		j := prog[i].(bpf.JumpIf)
		skip := drop - i - 1
		if skip > 255 {
			return nil, errors.New("filter too long")
		}
		j.SkipFalse = uint8(skip)
		prog[i] = j
	}
	return bpf.Assemble(prog)
}

// indexNow returns the index of the interface now named name (SIOCGIFINDEX
// on the socket), or -1. The ioctl is a raw system call that neither
// allocates nor wakes the Go scheduler's monitor thread: the receivers
// call Refresh twice a second, and net.InterfaceByName's netlink dump
// (five system calls the scheduler sees) kept that thread busy.
func (s *sock) indexNow(name string) int {
	var req struct {
		name  [unix.IFNAMSIZ]byte
		index int32
		_     [20]byte // the rest of struct ifreq
	}
	if len(name) >= len(req.name) {
		return -1
	}
	copy(req.name[:], name)
	var errno syscall.Errno
	if err := s.rc.Control(func(fd uintptr) {
		_, _, errno = unix.RawSyscall(unix.SYS_IOCTL, fd, unix.SIOCGIFINDEX, uintptr(unsafe.Pointer(&req)))
	}); err != nil || errno != 0 {
		return -1
	}
	return int(req.index)
}

// cur returns the current socket.
func (c *conn) cur() *sock {
	c.smu.Lock()
	defer c.smu.Unlock()
	return c.s
}

func (c *conn) Addr() net.HardwareAddr { return bytes.Clone(c.cur().mac) }

func (c *conn) SetReadDeadline(t time.Time) error { return c.cur().pc.SetReadDeadline(t) }

func (c *conn) Refresh() (bool, error) {
	c.smu.Lock()
	defer c.smu.Unlock()
	if c.closed.Load() {
		return false, fmt.Errorf("rawether: refresh %s: %w", c.name, net.ErrClosed)
	}
	if c.s.indexNow(c.name) == c.s.index {
		return false, nil // the usual case, in one raw system call
	}
	ifi, err := net.InterfaceByName(c.name)
	if err != nil {
		return false, fmt.Errorf("rawether: refresh: %w: %w", ErrNoInterface, err)
	}
	if ifi.Index == c.s.index {
		return false, nil
	}
	s, err := c.open()
	if err != nil {
		return false, err
	}
	// The new socket has no read deadline; a Recv blocked on the old
	// one goes on without one too.
	old := c.s
	c.s = s
	return true, old.pc.Close()
}

func (c *conn) Close() error {
	c.smu.Lock()
	defer c.smu.Unlock()
	c.closed.Store(true)
	if err := c.s.pc.Close(); err != nil {
		return fmt.Errorf("rawether: close %s: %w", c.name, err)
	}
	return nil
}

func (c *conn) Send(dst net.HardwareAddr, payload []byte) error {
	if len(dst) != 6 {
		return fmt.Errorf("rawether: send on %s: bad destination %q", c.name, dst)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	s := c.cur()
	if len(payload) > s.mtu {
		return fmt.Errorf("rawether: send on %s: payload of %d bytes exceeds MTU %d", c.name, len(payload), s.mtu)
	}
	b := append(c.wbuf[:0], dst...)
	b = append(b, s.mac...)
	b = binary.BigEndian.AppendUint16(b, uint16(c.etype))
	c.wbuf = append(b, payload...)
	c.werr = nil
	// The socket is bound to the interface and the EtherType: write(2)
	// needs no address, and the bound closure does not allocate.
	if err := s.rc.Write(c.writeFn); err != nil {
		return fmt.Errorf("rawether: send on %s: %w", c.name, c.closedErr(err))
	}
	if c.werr != nil {
		return fmt.Errorf("rawether: send on %s: %w", c.name, linkErr(os.NewSyscallError("write", c.werr)))
	}
	return nil
}

// linkErr marks the errors of a socket whose interface went down or away.
func linkErr(err error) error {
	if errors.Is(err, unix.ENETDOWN) || errors.Is(err, unix.ENXIO) || errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("%w: %w", ErrLinkDown, err)
	}
	return err
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
//
// The socket is non-blocking, so write(2) never sleeps: it is made as a
// raw system call, which the Go scheduler does not see. A system call the
// scheduler sees (syscall.Syscall) wakes its monitor thread (sysmon) when
// that sleeps, and sets it polling every 20 µs for a millisecond; at 2 ms
// heartbeats that was a third of the daemon's CPU time (test/bench/lan1
// -phases rest, issue 15).
func (c *conn) write(fd uintptr) bool {
	var p unsafe.Pointer
	if len(c.wbuf) > 0 {
		p = unsafe.Pointer(&c.wbuf[0])
	}
	_, _, errno := unix.RawSyscall(unix.SYS_WRITE, fd, uintptr(p), uintptr(len(c.wbuf)))
	if errno == unix.EAGAIN || errno == unix.EINTR {
		return false
	}
	c.werr = nil
	if errno != 0 {
		c.werr = errno
	}
	return true
}

func (c *conn) Recv(buf []byte) (int, net.HardwareAddr, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for {
		s := c.cur()
		c.rn, c.rerr = 0, nil
		// recvfrom(2) on the bound socket through the poller: deadlines
		// and Close apply, and nothing is allocated per frame.
		if err := s.rc.Read(c.readFn); err != nil {
			if !c.closed.Load() && c.cur() != s {
				continue // Refresh replaced the socket
			}
			return 0, nil, fmt.Errorf("rawether: recv on %s: %w", c.name, c.closedErr(err))
		}
		if c.rerr != nil {
			return 0, nil, fmt.Errorf("rawether: recv on %s: %w", c.name, linkErr(os.NewSyscallError("recvfrom", c.rerr)))
		}
		if c.rn < headerLen {
			continue // runt frame
		}
		b := c.rbuf[:min(c.rn, len(c.rbuf))]
		src := b[6:12]
		if ethernet.EtherType(binary.BigEndian.Uint16(b[12:14])) != c.etype || bytes.Equal(src, s.mac) {
			continue // not ours, or our own frame looped back
		}
		// rn is the frame's real length (MSG_TRUNC), even when it was
		// longer than rbuf (the MTU grew since the socket was opened).
		payload := b[headerLen:]
		m := copy(buf, payload)
		// The source lives in c.src until the next Recv: no allocation.
		c.src = append(c.src[:0], src...)
		if full := c.rn - headerLen; m < full {
			return m, c.src, fmt.Errorf("rawether: recv on %s: %w: %d bytes, buffer %d", c.name, ErrTruncated, full, len(buf))
		}
		return m, c.src, nil
	}
}

// read runs inside RawConn.Read; it returns false to wait for a frame.
// MSG_TRUNC makes recvfrom return the frame's length even when it did not
// fit; the raw system call avoids the allocation of a source address, and
// RawSyscall6 keeps the scheduler's monitor asleep (see write): the socket
// is non-blocking, recvfrom never sleeps.
func (c *conn) read(fd uintptr) bool {
	n, _, errno := unix.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&c.rbuf[0])), uintptr(len(c.rbuf)), unix.MSG_TRUNC, 0, 0)
	if errno == unix.EAGAIN || errno == unix.EINTR {
		return false
	}
	if errno != 0 {
		c.rerr = errno
		return true
	}
	c.rn = int(n)
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
