//go:build !linux

package arp

import (
	"context"
	"net"
	"net/netip"
	"time"
)

// Conn is the ARP Client of one interface; on this system Open always fails.
type Conn struct{}

// Open returns ErrNotSupported on this system.
func Open(ifname string) (*Conn, error) { return nil, ErrNotSupported }

// HardwareAddr returns nil.
func (c *Conn) HardwareAddr() net.HardwareAddr { return nil }

// Close returns nil.
func (c *Conn) Close() error { return nil }

// Announce returns ErrNotSupported.
func (c *Conn) Announce(ip netip.Addr, mac net.HardwareAddr) error { return ErrNotSupported }

// Probe returns ErrNotSupported.
func (c *Conn) Probe(ctx context.Context, ip netip.Addr, count int, interval time.Duration) (bool, net.HardwareAddr, error) {
	return false, nil, ErrNotSupported
}

// Resolve returns ErrNotSupported.
func (c *Conn) Resolve(ctx context.Context, ip netip.Addr) (net.HardwareAddr, error) {
	return nil, ErrNotSupported
}
