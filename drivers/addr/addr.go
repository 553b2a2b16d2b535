// Package addr adds and removes the service address on the LAN 1 interface.
//
// The real implementation (Open, OpenMacvlan) talks rtnetlink and exists on
// Linux only; other systems get ErrNotSupported. Every operation is
// idempotent: adding an address that is already there or removing one that
// is not is not an error, so the daemon can repeat a claim or a release after
// a restart or a failed step without special cases. A daemon that starts and
// is not primary should call Has and Remove the service address if a
// previous run left it behind (crash, kill -9, power loss of the daemon but
// not of the kernel).
//
// Matching is exact: Has and Remove consider an address present only when
// both the address and the prefix length match the configured prefix.
//
// # Virtual MAC
//
// With `[lan1] virtual-mac` the service address does not live on the LAN 1
// interface itself but on a macvlan child of it (like VRRP's use_vmac) whose
// locally administered MAC is derived from the pair id (VirtualMAC). Both
// units then present the same MAC for the service address, so clients and
// switches need no ARP update on failover; gratuitous ARP is still sent to
// move the switch's forwarding entry. OpenMacvlan creates the child (mode
// private) or adopts an existing one; on such a Manager, Add brings the link
// up before adding the address and Remove takes it down after removing the
// address, so a secondary never shows the virtual MAC on the wire. Delete
// removes the child at shutdown.
package addr

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
)

// ErrNotSupported is returned by Open and OpenMacvlan on systems other than Linux.
var ErrNotSupported = errors.New("addr: not supported on this system")

// Manager adds, removes and checks one interface's addresses. Add and Remove
// are idempotent. Implementations are safe for concurrent use.
type Manager interface {
	// Add puts p on the interface; an existing identical address is not an error.
	Add(p netip.Prefix) error
	// Remove takes p off the interface; a missing address is not an error.
	Remove(p netip.Prefix) error
	// Has reports whether exactly p (address and prefix length) is on the interface.
	Has(p netip.Prefix) (bool, error)
}

// VirtualMAC returns the virtual MAC address of a pair: 02:50 followed by the
// four bytes of the pair id in network byte order. 0x02 marks a locally
// administered unicast address, 0x50 is 'P'. All 32 bits of the pair id are
// kept so two pairs on one LAN get different MACs whenever their ids differ
// (the 02:50:47:xx:xx:xx layout has room for only 24 of them).
func VirtualMAC(pairID uint32) net.HardwareAddr {
	mac := make(net.HardwareAddr, 6)
	mac[0] = 0x02
	mac[1] = 0x50
	binary.BigEndian.PutUint32(mac[2:], pairID)
	return mac
}

// validPrefix reports whether p can be put on an interface: a valid
// address that is not the unspecified address, with the prefix in range.
func validPrefix(p netip.Prefix) bool {
	return p.IsValid() && !p.Addr().IsUnspecified() && !p.Addr().Is4In6() && p.Addr().Zone() == ""
}
