// Package arp speaks ARP on the LAN 1 interface: the RFC 5227 probe that
// tells whether the service address is still held before a takeover, the
// gratuitous announcements that move it to us afterwards (and the GARP
// scheduler that repeats and refreshes them), and the witness check.
//
// Packets are built with github.com/mdlayher/arp and sent on an AF_PACKET
// socket (github.com/mdlayher/packet), not with arp.Dial: the interface does
// not need an IPv4 address. The choice of sender IPv4 address is:
//   - Probe: always 0.0.0.0 (an RFC 5227 ARP Probe), so that probing never
//     changes anybody's neighbour cache;
//   - Announce: the service address, as sender and target (both forms);
//   - Resolve: the first IPv4 address the interface holds at the time of the
//     call (a management address, or the service address on the primary),
//     else 0.0.0.0. A node must not claim an address it does not hold, so the
//     secondary never uses the service address here; hosts that implement
//     RFC 5227 (Linux among them) answer a request from 0.0.0.0 too.
//
// Probe and Resolve each open their own socket for the duration of the call,
// so they see only packets that arrive after they start (no stale answers
// from a socket buffer) and may run concurrently with each other and with
// Announce. Frames the node itself sends are ignored (PACKET_IGNORE_OUTGOING,
// and the interface's own MAC is never taken as an answer).
//
// The real implementation exists on Linux only; elsewhere Open returns
// ErrNotSupported.
package arp

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"time"

	marp "github.com/mdlayher/arp"
)

var (
	// ErrNotSupported is returned by Open on systems other than Linux.
	ErrNotSupported = errors.New("arp: not supported on this system")
	// ErrNoReply is returned by Resolve when the context's deadline passes
	// without an answer: the host is unreachable.
	ErrNoReply = errors.New("arp: no reply")
)

// Announcer sends gratuitous ARP for an address. GARP drives one.
type Announcer interface {
	// Announce sends one gratuitous ARP request and one gratuitous ARP reply
	// binding ip to mac, to the Ethernet broadcast address.
	Announce(ip netip.Addr, mac net.HardwareAddr) error
}

// Client is what the daemon needs from ARP on LAN 1. *Conn implements it;
// arptest.Client is the fake.
type Client interface {
	Announcer
	// Probe sends count RFC 5227 probes for ip, interval apart, and listens
	// until interval after the last one. inUse is true, with the holder's
	// MAC, as soon as another host shows that it uses ip.
	Probe(ctx context.Context, ip netip.Addr, count int, interval time.Duration) (inUse bool, holder net.HardwareAddr, err error)
	// Resolve asks for ip's MAC until an answer arrives or ctx ends; when
	// ctx's deadline passes the error wraps ErrNoReply.
	Resolve(ctx context.Context, ip netip.Addr) (net.HardwareAddr, error)
	// HardwareAddr is the MAC of the interface.
	HardwareAddr() net.HardwareAddr
}

// zeroMAC is the target hardware address of requests.
var zeroMAC = net.HardwareAddr{0, 0, 0, 0, 0, 0}

// broadcast is the Ethernet broadcast address.
var broadcast = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// probePacket returns the RFC 5227 ARP Probe for ip from hw: a request
// with sender IP 0.0.0.0 and target MAC zero.
func probePacket(hw net.HardwareAddr, ip netip.Addr) (*marp.Packet, error) {
	return marp.NewPacket(marp.OperationRequest, hw, netip.IPv4Unspecified(), zeroMAC, ip)
}

// announcePackets returns the two gratuitous ARP packets binding ip to mac:
// the request form (RFC 5227 ARP Announcement: sender and target IP both ip,
// target MAC zero) and the reply form (sender and target IP ip, target MAC
// mac, as `arping -A` sends it; Linux accepts a gratuitous reply only when
// the target MAC equals the sender MAC). Both go to the Ethernet broadcast.
func announcePackets(ip netip.Addr, mac net.HardwareAddr) (req, reply *marp.Packet, err error) {
	req, err = marp.NewPacket(marp.OperationRequest, mac, ip, zeroMAC, ip)
	if err != nil {
		return nil, nil, err
	}
	reply, err = marp.NewPacket(marp.OperationReply, mac, ip, mac, ip)
	if err != nil {
		return nil, nil, err
	}
	return req, reply, nil
}

// valid reports whether p is an Ethernet/IPv4 ARP packet we can reason about.
func valid(p *marp.Packet) bool {
	return p.HardwareType == 1 && p.ProtocolType == 0x0800 && p.HardwareAddrLength == 6 &&
		p.IPLength == 4 && p.SenderIP.Is4() && p.TargetIP.Is4()
}

// conflict reports whether p, received while probing for ip, shows that
// another host uses or claims ip (RFC 5227 section 2.1.1): any ARP packet
// whose sender IP is ip, or another host's probe for ip. Packets from own
// (our interface's MAC) never count.
func conflict(p *marp.Packet, ip netip.Addr, own net.HardwareAddr) bool {
	if !valid(p) || bytes.Equal(p.SenderHardwareAddr, own) {
		return false
	}
	if p.SenderIP == ip {
		return true
	}
	return p.Operation == marp.OperationRequest && p.SenderIP.IsUnspecified() && p.TargetIP == ip
}

// answers reports whether p, received while resolving ip, tells ip's MAC:
// any ARP packet (reply or request) whose sender IP is ip, from a MAC that
// is not ours.
func answers(p *marp.Packet, ip netip.Addr, own net.HardwareAddr) bool {
	return valid(p) && p.SenderIP == ip && !bytes.Equal(p.SenderHardwareAddr, own)
}
