//go:build linux

package arp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"time"

	marp "github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/packet"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// resolveRetry is how often Resolve repeats its request while waiting.
const resolveRetry = time.Second

// Conn is the ARP Client of one Ethernet interface. It is safe for
// concurrent use.
type Conn struct {
	ifi *net.Interface
	w   *packet.Conn // sends announcements; its filter drops everything received
}

var _ Client = (*Conn)(nil)

// Open returns the ARP Client of the Ethernet interface ifname. It needs
// CAP_NET_RAW but no IPv4 address on the interface.
func Open(ifname string) (*Conn, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("arp: open %s: %w", ifname, err)
	}
	if len(ifi.HardwareAddr) != 6 {
		return nil, fmt.Errorf("arp: open %s: not an Ethernet interface", ifname)
	}
	dropAll, err := bpf.Assemble([]bpf.Instruction{bpf.RetConstant{Val: 0}})
	if err != nil {
		return nil, fmt.Errorf("arp: open %s: %w", ifname, err)
	}
	w, err := listen(ifi, dropAll)
	if err != nil {
		return nil, err
	}
	return &Conn{ifi: ifi, w: w}, nil
}

// listen opens an AF_PACKET socket for ARP frames on ifi that does not see
// the frames this host sends.
func listen(ifi *net.Interface, filter []bpf.RawInstruction) (*packet.Conn, error) {
	c, err := packet.Listen(ifi, packet.Raw, unix.ETH_P_ARP, &packet.Config{Filter: filter})
	if err != nil {
		return nil, fmt.Errorf("arp: listen on %s: %w", ifi.Name, err)
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, errors.Join(fmt.Errorf("arp: listen on %s: %w", ifi.Name, err), c.Close())
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1)
	}); err != nil {
		serr = err
	}
	// Kernels before 4.20 lack the option; the MAC check covers them.
	if serr != nil && !errors.Is(serr, unix.ENOPROTOOPT) {
		return nil, errors.Join(fmt.Errorf("arp: listen on %s: PACKET_IGNORE_OUTGOING: %w", ifi.Name, serr), c.Close())
	}
	return c, nil
}

// HardwareAddr returns the interface's MAC.
func (c *Conn) HardwareAddr() net.HardwareAddr { return slices.Clone(c.ifi.HardwareAddr) }

// Close closes the announcement socket.
func (c *Conn) Close() error {
	if err := c.w.Close(); err != nil {
		return fmt.Errorf("arp: close %s: %w", c.ifi.Name, err)
	}
	return nil
}

// send writes p in an Ethernet frame from p's sender MAC to dst.
func send(w *packet.Conn, p *marp.Packet, dst net.HardwareAddr) error {
	pb, err := p.MarshalBinary()
	if err != nil {
		return err
	}
	f := ethernet.Frame{Destination: dst, Source: p.SenderHardwareAddr, EtherType: ethernet.EtherTypeARP, Payload: pb}
	fb, err := f.MarshalBinary()
	if err != nil {
		return err
	}
	_, err = w.WriteTo(fb, &packet.Addr{HardwareAddr: dst})
	return err
}

// Announce sends the request and the reply form of gratuitous ARP for ip
// with mac as Ethernet source and sender MAC (nil means the interface's
// MAC; a virtual MAC is sent as is).
func (c *Conn) Announce(ip netip.Addr, mac net.HardwareAddr) error {
	if !ip.Is4() || ip.IsUnspecified() {
		return fmt.Errorf("arp: announce %s: not a usable IPv4 address", ip)
	}
	if mac == nil {
		mac = c.ifi.HardwareAddr
	}
	if len(mac) != 6 {
		return fmt.Errorf("arp: announce %s: invalid MAC %v", ip, mac)
	}
	req, reply, err := announcePackets(ip, mac)
	if err != nil {
		return fmt.Errorf("arp: announce %s: %w", ip, err)
	}
	for _, p := range []*marp.Packet{req, reply} {
		if err := send(c.w, p, broadcast); err != nil {
			return fmt.Errorf("arp: announce %s on %s: %w", ip, c.ifi.Name, err)
		}
	}
	return nil
}

// reader is a socket opened for one Probe or Resolve call.
type reader struct {
	c    *packet.Conn
	buf  []byte
	stop func() bool
}

func (c *Conn) newReader(ctx context.Context) (*reader, error) {
	s, err := listen(c.ifi, nil)
	if err != nil {
		return nil, err
	}
	// Cancelling ctx interrupts a blocked read.
	stop := context.AfterFunc(ctx, func() { _ = s.SetReadDeadline(time.Unix(1, 0)) })
	return &reader{c: s, buf: make([]byte, 1500), stop: stop}, nil
}

func (r *reader) close() error {
	r.stop()
	return r.c.Close()
}

// closeLater closes the reader in the background: closing a packet socket
// waits for an RCU grace period (synchronize_net), 4 to 15 ms measured on
// veth, which must not delay a probe's answer and so a takeover.
func (r *reader) closeLater() {
	go r.close()
}

// fineWait is the wait below which readUntil waits in ppoll(2), whose
// timeout the kernel keeps to tens of microseconds, rather than on the
// poller's millisecond deadline. The calling goroutine's thread blocks
// for at most that long.
const fineWait = 3 * time.Millisecond

// readFine waits up to d for a packet and reads it into r.buf; it returns
// -1 when none came.
func (r *reader) readFine(d time.Duration) (int, error) {
	rc, err := r.c.SyscallConn()
	if err != nil {
		return 0, err
	}
	n := -1
	var serr error
	if err := rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		ts := unix.NsecToTimespec(int64(max(d, 0)))
		for { // ppoll writes the time left into ts
			var k int
			k, serr = unix.Ppoll(fds, &ts, nil)
			if serr == unix.EINTR {
				continue
			}
			if serr != nil || k == 0 {
				return
			}
			break
		}
		n, _, serr = unix.Recvfrom(int(fd), r.buf, unix.MSG_DONTWAIT)
		if serr == unix.EAGAIN {
			n, serr = -1, nil
		}
	}); err != nil {
		return 0, err
	}
	if serr != nil {
		return 0, fmt.Errorf("arp: read: %w", serr)
	}
	return n, nil
}

// readUntil reads ARP packets until deadline, returning the first for which
// match is true, or nil when the deadline passes. It returns ctx's error
// when ctx ends first.
func (r *reader) readUntil(ctx context.Context, deadline time.Time, match func(*marp.Packet) bool) (*marp.Packet, error) {
	if err := r.c.SetReadDeadline(deadline); err != nil {
		return nil, err
	}
	// Checked after setting the deadline: a cancellation from now on
	// overrides it (see newReader).
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for {
		var n int
		var err error
		if rem := time.Until(deadline); rem < fineWait {
			// The poller's deadlines are kept to the millisecond
			// (epoll_pwait), too coarse for the last stretch of a probe:
			// at 2 ms heartbeats the probe listens for 1.2 ms in all.
			// A packet that came in time is read even when the deadline
			// has passed since.
			n, err = r.readFine(rem)
			if err == nil && n < 0 {
				if cerr := ctx.Err(); cerr != nil {
					return nil, cerr
				}
				return nil, nil
			}
		} else {
			n, _, err = r.c.ReadFrom(r.buf)
		}
		if err != nil {
			if cerr := ctx.Err(); cerr != nil {
				return nil, cerr
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return nil, nil
			}
			return nil, err
		}
		var f ethernet.Frame
		if err := f.UnmarshalBinary(r.buf[:n]); err != nil || f.EtherType != ethernet.EtherTypeARP {
			continue
		}
		p := new(marp.Packet)
		if err := p.UnmarshalBinary(f.Payload); err != nil {
			continue
		}
		if match(p) {
			return p, nil
		}
	}
}

// Probe sends count RFC 5227 ARP Probes for ip (sender IP 0.0.0.0, sender
// MAC the interface's), interval apart, and listens until interval after
// the last one, so it takes count×interval when the address is free. Any
// ARP packet from another MAC whose sender IP is ip, or another host's probe
// for ip, means ip is in use: Probe then returns at once with that MAC. RFC
// 5227 asks for 3 probes 1–2 s apart; a failover appliance usually wants
// shorter, e.g. 3 × 200 ms.
func (c *Conn) Probe(ctx context.Context, ip netip.Addr, count int, interval time.Duration) (bool, net.HardwareAddr, error) {
	if !ip.Is4() || ip.IsUnspecified() {
		return false, nil, fmt.Errorf("arp: probe %s: not a usable IPv4 address", ip)
	}
	if count < 1 || interval <= 0 {
		return false, nil, fmt.Errorf("arp: probe %s: count %d and interval %v must be positive", ip, count, interval)
	}
	p, err := probePacket(c.ifi.HardwareAddr, ip)
	if err != nil {
		return false, nil, fmt.Errorf("arp: probe %s: %w", ip, err)
	}
	r, err := c.newReader(ctx)
	if err != nil {
		return false, nil, err
	}
	defer r.closeLater()
	match := func(q *marp.Packet) bool { return conflict(q, ip, c.ifi.HardwareAddr) }
	for range count {
		if err := send(r.c, p, broadcast); err != nil {
			return false, nil, fmt.Errorf("arp: probe %s on %s: %w", ip, c.ifi.Name, err)
		}
		q, err := r.readUntil(ctx, time.Now().Add(interval), match)
		if err != nil {
			return false, nil, fmt.Errorf("arp: probe %s on %s: %w", ip, c.ifi.Name, err)
		}
		if q != nil {
			return true, slices.Clone(q.SenderHardwareAddr), nil
		}
	}
	return false, nil, nil
}

// sourceIPv4 returns the interface's first IPv4 address now, or 0.0.0.0.
func (c *Conn) sourceIPv4() netip.Addr {
	ifi, err := net.InterfaceByIndex(c.ifi.Index)
	if err != nil {
		return netip.IPv4Unspecified()
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return netip.IPv4Unspecified()
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap().Is4() {
				return ip.Unmap()
			}
		}
	}
	return netip.IPv4Unspecified()
}

// Resolve sends an ARP request for ip (repeated every second) and returns
// the MAC of the first ARP packet whose sender IP is ip. The sender IP of
// the request is the interface's first IPv4 address at the time of the call,
// or 0.0.0.0 when it has none (see the package documentation). When ctx's
// deadline passes first the error wraps ErrNoReply; the witness check calls
// it with a timeout, e.g. 1 s every 2 s.
func (c *Conn) Resolve(ctx context.Context, ip netip.Addr) (net.HardwareAddr, error) {
	if !ip.Is4() || ip.IsUnspecified() {
		return nil, fmt.Errorf("arp: resolve %s: not a usable IPv4 address", ip)
	}
	src := c.sourceIPv4()
	p, err := marp.NewPacket(marp.OperationRequest, c.ifi.HardwareAddr, src, zeroMAC, ip)
	if err != nil {
		return nil, fmt.Errorf("arp: resolve %s: %w", ip, err)
	}
	r, err := c.newReader(ctx)
	if err != nil {
		return nil, err
	}
	defer r.closeLater()
	match := func(q *marp.Packet) bool { return answers(q, ip, c.ifi.HardwareAddr) }
	for {
		if err := send(r.c, p, broadcast); err != nil {
			return nil, fmt.Errorf("arp: resolve %s on %s: %w", ip, c.ifi.Name, err)
		}
		q, err := r.readUntil(ctx, time.Now().Add(resolveRetry), match)
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("arp: resolve %s on %s: %w", ip, c.ifi.Name, ErrNoReply)
		}
		if err != nil {
			return nil, fmt.Errorf("arp: resolve %s on %s: %w", ip, c.ifi.Name, err)
		}
		if q != nil {
			return slices.Clone(q.SenderHardwareAddr), nil
		}
	}
}
