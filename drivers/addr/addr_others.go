//go:build !linux

package addr

import (
	"net"
	"net/netip"
)

// Netlink is the rtnetlink Manager; on this system every method returns ErrNotSupported.
type Netlink struct{}

// Open returns ErrNotSupported on this system.
func Open(ifname string) (*Netlink, error) { return nil, ErrNotSupported }

// OpenMacvlan returns ErrNotSupported on this system.
func OpenMacvlan(parent, name string, mac net.HardwareAddr) (*Netlink, error) {
	return nil, ErrNotSupported
}

// Add returns ErrNotSupported.
func (n *Netlink) Add(p netip.Prefix) error { return ErrNotSupported }

// Remove returns ErrNotSupported.
func (n *Netlink) Remove(p netip.Prefix) error { return ErrNotSupported }

// Has returns ErrNotSupported.
func (n *Netlink) Has(p netip.Prefix) (bool, error) { return false, ErrNotSupported }

// Delete returns ErrNotSupported.
func (n *Netlink) Delete() error { return ErrNotSupported }

// Close returns nil.
func (n *Netlink) Close() error { return nil }
