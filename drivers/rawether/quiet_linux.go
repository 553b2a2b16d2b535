//go:build linux

package rawether

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// quiet is a Drainer: an AF_PACKET socket that the Go runtime's poller
// does not watch, so that a frame arriving wakes no thread. All its
// methods take one lock; the daemon uses it from its loop only.
type quiet struct {
	name   string
	etype  uint16
	filter []bpf.RawInstruction

	mu       sync.Mutex
	closed   bool
	fd       int
	index    int
	mac      net.HardwareAddr
	mtu      int
	deadline time.Time

	wbuf []byte
	rbuf []byte
	oob  []byte // control messages: the arrival time
	src  net.HardwareAddr
	iov  unix.Iovec
	msg  unix.Msghdr
}

// ListenQuiet is Listen for a Conn outside the Go runtime's poller: a
// frame arriving wakes no thread. The caller takes the queued frames with
// RecvNow, each with the time the kernel received it (SO_TIMESTAMPNS),
// when it chooses: the daemon does so when it wakes up to send a
// heartbeat, at intervals of a few milliseconds (issue 15: a node that
// also woke up for every frame it received woke twice as often). Recv
// works too, by polling the socket.
func ListenQuiet(ifname string, etherType uint16, filter *Filter) (Drainer, error) {
	prog, err := assemble(etherType, filter)
	if err != nil {
		return nil, fmt.Errorf("rawether: filter: %w", err)
	}
	q := &quiet{name: ifname, etype: etherType, filter: prog, fd: -1}
	if err := q.open(); err != nil {
		return nil, err
	}
	q.wbuf = make([]byte, 0, headerLen+q.mtu)
	q.rbuf = make([]byte, headerLen+q.mtu)
	q.oob = make([]byte, unix.CmsgSpace(int(unsafe.Sizeof(unix.Timespec{})))*2)
	return q, nil
}

// open opens the socket on the interface now named q.name and replaces
// the current one.
func (q *quiet) open() error {
	ifi, err := net.InterfaceByName(q.name)
	if err != nil {
		return fmt.Errorf("rawether: %w: %w", ErrNoInterface, err)
	}
	if len(ifi.HardwareAddr) != 6 {
		return fmt.Errorf("rawether: %s is not an Ethernet interface (hardware address %q)", q.name, ifi.HardwareAddr)
	}
	// Protocol 0 until bound: the socket takes no frame before its filter
	// and its interface are set.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("rawether: listen on %s: %w", q.name, err)
	}
	fail := func(what string, err error) error {
		unix.Close(fd)
		return fmt.Errorf("rawether: listen on %s: %s: %w", q.name, what, err)
	}
	if len(q.filter) > 0 {
		ins := make([]unix.SockFilter, len(q.filter))
		for i, r := range q.filter {
			ins[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
		}
		if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: uint16(len(ins)), Filter: &ins[0]}); err != nil {
			return fail("filter", err)
		}
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
		return fail("SO_TIMESTAMPNS", err)
	}
	// As Listen: not the frames this host sends (Linux 4.20 and later;
	// RecvNow drops our own source address on older kernels).
	_ = unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1)
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(q.etype), Ifindex: ifi.Index}); err != nil {
		return fail("bind", err)
	}
	mtu := ifi.MTU
	if mtu <= 0 {
		mtu = 1500
	}
	if q.fd >= 0 {
		unix.Close(q.fd)
	}
	q.fd, q.index, q.mac, q.mtu = fd, ifi.Index, bytes.Clone(ifi.HardwareAddr), mtu
	if len(q.rbuf) < headerLen+mtu {
		q.rbuf = make([]byte, headerLen+mtu)
	}
	return nil
}

// htons returns v in network byte order, as the socket calls take it.
func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}

func (q *quiet) Addr() net.HardwareAddr {
	q.mu.Lock()
	defer q.mu.Unlock()
	return bytes.Clone(q.mac)
}

func (q *quiet) SetReadDeadline(t time.Time) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.deadline = t
	return nil
}

func (q *quiet) Refresh() (bool, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false, fmt.Errorf("rawether: refresh %s: %w", q.name, net.ErrClosed)
	}
	if ifIndex(q.fd, q.name) == q.index {
		return false, nil
	}
	ifi, err := net.InterfaceByName(q.name)
	if err != nil {
		return false, fmt.Errorf("rawether: refresh: %w: %w", ErrNoInterface, err)
	}
	if ifi.Index == q.index {
		return false, nil
	}
	if err := q.open(); err != nil {
		return false, err
	}
	return true, nil
}

// ifIndex is sock.indexNow on a plain descriptor.
func ifIndex(fd int, name string) int {
	var req struct {
		name  [unix.IFNAMSIZ]byte
		index int32
		_     [20]byte
	}
	if len(name) >= len(req.name) {
		return -1
	}
	copy(req.name[:], name)
	if _, _, errno := unix.RawSyscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCGIFINDEX, uintptr(unsafe.Pointer(&req))); errno != 0 {
		return -1
	}
	return int(req.index)
}

func (q *quiet) Close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil
	}
	q.closed = true
	if err := unix.Close(q.fd); err != nil {
		return fmt.Errorf("rawether: close %s: %w", q.name, err)
	}
	return nil
}

// Send writes the frame with a raw system call; the socket is
// non-blocking: a full send queue loses the frame (an error).
func (q *quiet) Send(dst net.HardwareAddr, payload []byte) error {
	if len(dst) != 6 {
		return fmt.Errorf("rawether: send on %s: bad destination %q", q.name, dst)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return fmt.Errorf("rawether: send on %s: %w", q.name, net.ErrClosed)
	}
	if len(payload) > q.mtu {
		return fmt.Errorf("rawether: send on %s: payload of %d bytes exceeds MTU %d", q.name, len(payload), q.mtu)
	}
	b := append(q.wbuf[:0], dst...)
	b = append(b, q.mac...)
	b = binary.BigEndian.AppendUint16(b, q.etype)
	q.wbuf = append(b, payload...)
	_, _, errno := unix.RawSyscall(unix.SYS_WRITE, uintptr(q.fd), uintptr(unsafe.Pointer(&q.wbuf[0])), uintptr(len(q.wbuf)))
	if errno != 0 {
		return fmt.Errorf("rawether: send on %s: %w", q.name, linkErr(os.NewSyscallError("write", errno)))
	}
	return nil
}

// RecvNow takes the next queued frame; recvmsg(2) with MSG_DONTWAIT as a
// raw system call, nothing allocated.
func (q *quiet) RecvNow(buf []byte) (int, net.HardwareAddr, time.Time, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return 0, nil, time.Time{}, fmt.Errorf("rawether: recv on %s: %w", q.name, net.ErrClosed)
	}
	for {
		q.iov.Base = &q.rbuf[0]
		q.iov.SetLen(len(q.rbuf))
		q.msg = unix.Msghdr{Iov: &q.iov, Control: &q.oob[0]}
		q.msg.SetIovlen(1)
		q.msg.SetControllen(len(q.oob))
		n, _, errno := unix.RawSyscall(unix.SYS_RECVMSG, uintptr(q.fd), uintptr(unsafe.Pointer(&q.msg)), unix.MSG_DONTWAIT|unix.MSG_TRUNC)
		switch {
		case errno == unix.EAGAIN || errno == unix.EINTR:
			return 0, nil, time.Time{}, ErrNoFrame
		case errno != 0:
			return 0, nil, time.Time{}, fmt.Errorf("rawether: recv on %s: %w", q.name, linkErr(os.NewSyscallError("recvmsg", errno)))
		}
		rn := int(n)
		if rn < headerLen {
			continue // runt frame
		}
		b := q.rbuf[:min(rn, len(q.rbuf))]
		src := b[6:12]
		if binary.BigEndian.Uint16(b[12:14]) != q.etype || bytes.Equal(src, q.mac) {
			continue
		}
		at := q.stamp()
		m := copy(buf, b[headerLen:])
		q.src = append(q.src[:0], src...)
		if full := rn - headerLen; m < full {
			return m, q.src, at, fmt.Errorf("rawether: recv on %s: %w: %d bytes, buffer %d", q.name, ErrTruncated, full, len(buf))
		}
		return m, q.src, at, nil
	}
}

// stamp returns the arrival time in the control messages of the last
// recvmsg. The kernel dates a frame it did not stamp on arrival when it is
// read (the first frames after a socket asked for timestamps): later, never
// earlier, so a peer is never taken for silent sooner than it was.
func (q *quiet) stamp() time.Time {
	oob := q.oob[:q.msg.Controllen]
	for len(oob) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < unix.SizeofCmsghdr || l > len(oob) {
			break
		}
		if h.Level == unix.SOL_SOCKET && h.Type == unix.SO_TIMESTAMPNS && l >= unix.CmsgLen(int(unsafe.Sizeof(unix.Timespec{}))) {
			ts := (*unix.Timespec)(unsafe.Pointer(&oob[unix.CmsgLen(0)]))
			return time.Unix(int64(ts.Sec), int64(ts.Nsec))
		}
		oob = oob[min(unix.CmsgSpace(l-unix.CmsgLen(0)), len(oob)):]
	}
	return time.Now()
}

// Recv waits for a frame by polling the socket, a slice of time at a
// time, so that Close and the deadline are seen.
func (q *quiet) Recv(buf []byte) (int, net.HardwareAddr, error) {
	for {
		n, src, _, err := q.RecvNow(buf)
		if !errors.Is(err, ErrNoFrame) {
			return n, src, err
		}
		q.mu.Lock()
		fd, deadline := q.fd, q.deadline
		q.mu.Unlock()
		wait := 50 * time.Millisecond
		if !deadline.IsZero() {
			left := time.Until(deadline)
			if left <= 0 {
				return 0, nil, fmt.Errorf("rawether: recv on %s: %w", q.name, os.ErrDeadlineExceeded)
			}
			wait = min(wait, left)
		}
		ts := unix.NsecToTimespec(int64(wait))
		_, err = unix.Ppoll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, &ts, nil)
		if err != nil && !errors.Is(err, syscall.EINTR) {
			return 0, nil, fmt.Errorf("rawether: recv on %s: %w", q.name, err)
		}
	}
}
