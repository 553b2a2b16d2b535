// Package ndp announces the IPv6 service address on LAN 1 with unsolicited
// neighbour advertisements (RFC 4861 section 7.2.6), the IPv6 counterpart
// of gratuitous ARP, using github.com/mdlayher/ndp.
//
// An advertisement goes to all-nodes (ff02::1) with the Override flag set,
// Solicited clear, hop limit 255 and a Target Link-Layer Address option
// carrying the MAC. Neighbours update an existing cache entry (to STALE, so
// they confirm it on next use); like Linux they do not create one, which is
// fine: a host that never talked to the service address has nothing stale.
//
// Open the Conn on the interface that holds the service address: the LAN 1
// interface, or the macvlan child when `[lan1] virtual-mac` is set, so the
// frames leave with the virtual MAC as Ethernet source and switches learn it.
// The IPv6 source address is chosen by the kernel (normally the interface's
// link-local address). *Conn satisfies arp.Announcer's method set, so
// arp.GARP can repeat IPv6 announcements too.
//
// The real implementation exists on Linux only; elsewhere Open returns
// ErrNotSupported. There is no IPv6 probe (DAD-style neighbour solicitation)
// yet: the takeover guard probes the IPv4 service address.
package ndp

import (
	"errors"
	"net"
	"net/netip"

	mndp "github.com/mdlayher/ndp"
)

// ErrNotSupported is returned by Open on systems other than Linux.
var ErrNotSupported = errors.New("ndp: not supported on this system")

// Announcer sends unsolicited neighbour advertisements. *Conn implements it;
// ndptest.Announcer is the fake.
type Announcer interface {
	// Announce sends one unsolicited neighbour advertisement binding ip to mac.
	Announce(ip netip.Addr, mac net.HardwareAddr) error
}

// allNodes is the link-local all-nodes multicast address ff02::1.
var allNodes = netip.MustParseAddr("ff02::1")

// advertisement returns the unsolicited neighbour advertisement for ip at mac.
func advertisement(ip netip.Addr, mac net.HardwareAddr) *mndp.NeighborAdvertisement {
	return &mndp.NeighborAdvertisement{
		Override:      true,
		TargetAddress: ip,
		Options:       []mndp.Option{&mndp.LinkLayerAddress{Direction: mndp.Target, Addr: mac}},
	}
}

// usable reports whether ip may be announced: a unicast IPv6 address
// without zone that is not link-local.
func usable(ip netip.Addr) bool {
	return ip.Is6() && !ip.Is4In6() && ip.Zone() == "" && !ip.IsUnspecified() &&
		!ip.IsMulticast() && !ip.IsLinkLocalUnicast() && !ip.IsLoopback()
}
