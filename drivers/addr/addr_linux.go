//go:build linux

package addr

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"

	"github.com/jsimonetti/rtnetlink"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// macvlanModePrivate is MACVLAN_MODE_PRIVATE from linux/if_link.h: the
// child does not talk to sibling macvlans on the same parent.
const macvlanModePrivate = 1

// Netlink is the Manager of one interface, talking rtnetlink. It is safe for
// concurrent use. A Netlink from OpenMacvlan also manages the macvlan link's
// up/down state (see the package documentation).
type Netlink struct {
	mu      sync.Mutex
	c       *rtnetlink.Conn
	name    string
	index   uint32
	macvlan bool
}

var _ Manager = (*Netlink)(nil)

// Open returns a Manager for the addresses of the interface ifname (the LAN
// 1 interface). The interface must exist; its index is looked up once.
func Open(ifname string) (*Netlink, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("addr: open %s: %w", ifname, err)
	}
	c, err := rtnetlink.Dial(nil)
	if err != nil {
		return nil, fmt.Errorf("addr: open %s: rtnetlink: %w", ifname, err)
	}
	return &Netlink{c: c, name: ifname, index: uint32(ifi.Index)}, nil
}

// OpenMacvlan returns a Manager for a macvlan interface called name on top of
// parent, with the hardware address mac (normally VirtualMAC(pairID)). It
// creates the link in mode private, left down, or adopts an existing macvlan
// of that name on that parent (a previous run), setting its MAC if it
// differs. A link of that name of another kind or on another parent is an
// error. It also sets two sysctls on both parent and child (in the calling
// thread's network namespace), as LVS and VRRP setups do:
//   - arp_ignore=1: each answers ARP only for its own addresses; otherwise the
//     parent answers for the service address with its own MAC, and the child
//     for the parent's management address with the virtual MAC;
//   - arp_announce=2: ARP requests use a source address of the outgoing
//     interface; otherwise a reply sent from the service address through the
//     parent (the parent's connected route comes first) would make the
//     neighbours learn the service address with the parent's MAC.
//
// The parent should therefore carry a management address of its own; if it
// has none the kernel may still pick the service address for ARP requests
// sent through the parent.
func OpenMacvlan(parent, name string, mac net.HardwareAddr) (*Netlink, error) {
	if len(mac) != 6 || mac[0]&1 != 0 {
		return nil, fmt.Errorf("addr: macvlan %s: %v is not a unicast Ethernet address", name, mac)
	}
	if name == "" || len(name) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("addr: macvlan %q: invalid interface name", name)
	}
	pifi, err := net.InterfaceByName(parent)
	if err != nil {
		return nil, fmt.Errorf("addr: macvlan %s: parent: %w", name, err)
	}
	c, err := rtnetlink.Dial(nil)
	if err != nil {
		return nil, fmt.Errorf("addr: macvlan %s: rtnetlink: %w", name, err)
	}
	n := &Netlink{c: c, name: name, macvlan: true}
	if err := n.ensureMacvlan(uint32(pifi.Index), parent, mac); err != nil {
		return nil, errors.Join(err, c.Close())
	}
	for _, ifname := range []string{parent, name} {
		for key, value := range arpSysctls {
			if err := setSysctl("net/ipv4/conf/"+ifname+"/"+key, value); err != nil {
				return nil, errors.Join(fmt.Errorf("addr: macvlan %s: %w", name, err), c.Close())
			}
		}
	}
	return n, nil
}

// arpSysctls are the per-interface IPv4 sysctls OpenMacvlan sets on parent and child.
var arpSysctls = map[string]string{"arp_ignore": "1", "arp_announce": "2"}

func (n *Netlink) ensureMacvlan(parentIndex uint32, parent string, mac net.HardwareAddr) error {
	if ifi, err := net.InterfaceByName(n.name); err == nil {
		msg, err := n.c.Link.Get(uint32(ifi.Index))
		if err != nil {
			return fmt.Errorf("addr: macvlan %s: %w", n.name, err)
		}
		a := msg.Attributes
		if a == nil || a.Info == nil || a.Info.Kind != "macvlan" || a.Type != parentIndex {
			return fmt.Errorf("addr: macvlan %s: an interface of that name exists and is not a macvlan on %s", n.name, parent)
		}
		n.index = uint32(ifi.Index)
		if bytes.Equal(a.Address, mac) {
			return nil
		}
		// The MAC of a macvlan can only change while it is down.
		if err := n.setUp(false); err != nil {
			return err
		}
		err = n.c.Link.Set(&rtnetlink.LinkMessage{
			Family:     unix.AF_UNSPEC,
			Index:      n.index,
			Attributes: &rtnetlink.LinkAttributes{Address: mac},
		})
		if err != nil {
			return fmt.Errorf("addr: macvlan %s: set MAC %v: %w", n.name, mac, err)
		}
		return nil
	}
	ae := netlink.NewAttributeEncoder()
	ae.Uint32(unix.IFLA_MACVLAN_MODE, macvlanModePrivate)
	data, err := ae.Encode()
	if err != nil {
		return fmt.Errorf("addr: macvlan %s: %w", n.name, err)
	}
	err = n.c.Link.New(&rtnetlink.LinkMessage{
		Family: unix.AF_UNSPEC,
		Attributes: &rtnetlink.LinkAttributes{
			Name:    n.name,
			Type:    parentIndex, // encoded as IFLA_LINK by rtnetlink
			Address: mac,
			Info:    &rtnetlink.LinkInfo{Kind: "macvlan", Data: data},
		},
	})
	if err != nil {
		return fmt.Errorf("addr: macvlan %s: create on %s: %w", n.name, parent, err)
	}
	ifi, err := net.InterfaceByName(n.name)
	if err != nil {
		return fmt.Errorf("addr: macvlan %s: %w", n.name, err)
	}
	n.index = uint32(ifi.Index)
	return nil
}

// setSysctl writes value to /proc/sys/key, in the caller thread's network namespace.
func setSysctl(key, value string) error {
	if err := os.WriteFile("/proc/sys/"+key, []byte(value), 0); err != nil {
		return fmt.Errorf("sysctl %s: %w", key, err)
	}
	return nil
}

func (n *Netlink) setUp(up bool) error {
	var flags uint32
	if up {
		flags = unix.IFF_UP
	}
	err := n.c.Link.Set(&rtnetlink.LinkMessage{
		Family: unix.AF_UNSPEC,
		Index:  n.index,
		Flags:  flags,
		Change: unix.IFF_UP,
	})
	if err != nil {
		return fmt.Errorf("addr: %s: set up=%t: %w", n.name, up, err)
	}
	return nil
}

// message builds the rtnetlink request for p on the interface with index.
// IPv4 addresses get the subnet's broadcast address (as `ip addr add ...
// brd +`); IPv6 addresses get IFA_F_NODAD, so that they are usable at once:
// the ARP/NDP probe before a takeover is the duplicate check.
func message(p netip.Prefix, index uint32) *rtnetlink.AddressMessage {
	ip := net.IP(p.Addr().AsSlice())
	m := &rtnetlink.AddressMessage{
		PrefixLength: uint8(p.Bits()),
		Scope:        unix.RT_SCOPE_UNIVERSE,
		Index:        index,
		Attributes:   &rtnetlink.AddressAttributes{Address: ip, Local: ip},
	}
	if p.Addr().Is4() {
		m.Family = unix.AF_INET
		if p.Bits() < 31 {
			b := p.Addr().As4()
			host := ^uint32(0) >> p.Bits()
			v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) | host
			m.Attributes.Broadcast = net.IPv4(byte(v>>24), byte(v>>16), byte(v>>8), byte(v)).To4()
		}
	} else {
		m.Family = unix.AF_INET6
		m.Attributes.Flags = unix.IFA_F_NODAD
	}
	return m
}

// Add puts p on the interface. An identical address already there is not an
// error. On a macvlan Manager the link is brought up first.
func (n *Netlink) Add(p netip.Prefix) error {
	if !validPrefix(p) {
		return fmt.Errorf("addr: add %s on %s: invalid prefix", p, n.name)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.macvlan {
		if err := n.setUp(true); err != nil {
			return err
		}
	}
	err := n.c.Address.New(message(p, n.index))
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("addr: add %s on %s: %w", p, n.name, err)
	}
	return nil
}

// Remove takes p off the interface. A missing address is not an error. On a
// macvlan Manager the link is taken down afterwards.
func (n *Netlink) Remove(p netip.Prefix) error {
	if !validPrefix(p) {
		return fmt.Errorf("addr: remove %s on %s: invalid prefix", p, n.name)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	err := n.c.Address.Delete(message(p, n.index))
	if err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
		return fmt.Errorf("addr: remove %s on %s: %w", p, n.name, err)
	}
	if n.macvlan {
		return n.setUp(false)
	}
	return nil
}

// Has reports whether exactly p (address and prefix length) is on the interface.
func (n *Netlink) Has(p netip.Prefix) (bool, error) {
	if !validPrefix(p) {
		return false, fmt.Errorf("addr: has %s on %s: invalid prefix", p, n.name)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	msgs, err := n.c.Address.List()
	if err != nil {
		return false, fmt.Errorf("addr: list %s: %w", n.name, err)
	}
	for _, m := range msgs {
		if m.Index != n.index || int(m.PrefixLength) != p.Bits() || m.Attributes == nil {
			continue
		}
		ip := m.Attributes.Local // IPv4: the local address; Address may be a peer
		if ip == nil {
			ip = m.Attributes.Address
		}
		a, ok := netip.AddrFromSlice(ip)
		if ok && a.Unmap() == p.Addr() {
			return true, nil
		}
	}
	return false, nil
}

// Delete removes the macvlan link (with its addresses). It is an error on a
// Manager from Open: the LAN 1 interface is not ours to delete. Deleting a
// link that is already gone is not an error.
func (n *Netlink) Delete() error {
	if !n.macvlan {
		return fmt.Errorf("addr: delete %s: not a macvlan made by OpenMacvlan", n.name)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	err := n.c.Link.Delete(n.index)
	if err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("addr: delete %s: %w", n.name, err)
	}
	return nil
}

// Close releases the netlink socket. It leaves addresses and links as they are.
func (n *Netlink) Close() error {
	if err := n.c.Close(); err != nil {
		return fmt.Errorf("addr: close %s: %w", n.name, err)
	}
	return nil
}
