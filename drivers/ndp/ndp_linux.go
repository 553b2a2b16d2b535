//go:build linux

package ndp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	mndp "github.com/mdlayher/ndp"
	"golang.org/x/net/ipv6"
)

// Conn sends neighbour advertisements on one interface. It is safe for
// concurrent use.
type Conn struct {
	ifi *net.Interface
	c   *mndp.Conn
}

var _ Announcer = (*Conn)(nil)

// Open returns a Conn for the Ethernet interface ifname. It needs
// CAP_NET_RAW and IPv6 enabled on the interface, but no IPv6 address.
func Open(ifname string) (*Conn, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("ndp: open %s: %w", ifname, err)
	}
	if len(ifi.HardwareAddr) != 6 {
		return nil, fmt.Errorf("ndp: open %s: not an Ethernet interface", ifname)
	}
	c, _, err := mndp.Listen(ifi, mndp.Unspecified)
	if err != nil {
		return nil, fmt.Errorf("ndp: open %s: %w", ifname, err)
	}
	// We only send: let the kernel drop every ICMPv6 message for this socket.
	var f ipv6.ICMPFilter
	f.SetAll(true)
	if err := c.SetICMPFilter(&f); err != nil {
		return nil, errors.Join(fmt.Errorf("ndp: open %s: %w", ifname, err), c.Close())
	}
	return &Conn{ifi: ifi, c: c}, nil
}

// HardwareAddr returns the interface's MAC.
func (c *Conn) HardwareAddr() net.HardwareAddr { return slices.Clone(c.ifi.HardwareAddr) }

// Announce sends one unsolicited neighbour advertisement for ip with
// Override set and mac (nil: the interface's MAC) as target link-layer
// address, to ff02::1.
func (c *Conn) Announce(ip netip.Addr, mac net.HardwareAddr) error {
	if !usable(ip) {
		return fmt.Errorf("ndp: announce %s: not a usable IPv6 unicast address", ip)
	}
	if mac == nil {
		mac = c.ifi.HardwareAddr
	}
	if len(mac) != 6 {
		return fmt.Errorf("ndp: announce %s: invalid MAC %v", ip, mac)
	}
	if err := c.c.WriteTo(advertisement(ip, mac), nil, allNodes); err != nil {
		return fmt.Errorf("ndp: announce %s on %s: %w", ip, c.ifi.Name, err)
	}
	return nil
}

// Close closes the socket.
func (c *Conn) Close() error {
	if err := c.c.Close(); err != nil {
		return fmt.Errorf("ndp: close %s: %w", c.ifi.Name, err)
	}
	return nil
}
