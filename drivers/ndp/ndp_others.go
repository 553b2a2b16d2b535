//go:build !linux

package ndp

import (
	"net"
	"net/netip"
)

// Conn sends neighbour advertisements; on this system Open always fails.
type Conn struct{}

// Open returns ErrNotSupported on this system.
func Open(ifname string) (*Conn, error) { return nil, ErrNotSupported }

// HardwareAddr returns nil.
func (c *Conn) HardwareAddr() net.HardwareAddr { return nil }

// Announce returns ErrNotSupported.
func (c *Conn) Announce(ip netip.Addr, mac net.HardwareAddr) error { return ErrNotSupported }

// Close returns nil.
func (c *Conn) Close() error { return nil }
