// Package arptest is a fake arp.Client for the daemon's unit tests. It
// answers at once from tables the test fills (SetProbe, SetResolve) and
// records every call in order.
package arptest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/pairguard/pairguard/drivers/arp"
)

// Op names a Client method.
type Op int

// The operations a Client records. The zero Op is invalid.
const (
	OpInvalid Op = iota
	OpProbe
	OpAnnounce
	OpResolve
)

// String returns the method name.
func (o Op) String() string {
	switch o {
	case OpProbe:
		return "Probe"
	case OpAnnounce:
		return "Announce"
	case OpResolve:
		return "Resolve"
	}
	return fmt.Sprintf("Op(%d)", int(o))
}

// Call is one recorded call. MAC is Announce's argument or the MAC that
// Probe or Resolve returned.
type Call struct {
	Op       Op
	IP       netip.Addr
	MAC      net.HardwareAddr
	Count    int           // Probe only
	Interval time.Duration // Probe only
	Err      error         // what the call returned
}

// String formats the call, e.g. "Announce(192.0.2.10, 02:50:00:00:00:01)".
func (c Call) String() string {
	switch c.Op {
	case OpProbe:
		return fmt.Sprintf("Probe(%s, %d, %v)", c.IP, c.Count, c.Interval)
	case OpAnnounce:
		return fmt.Sprintf("Announce(%s, %v)", c.IP, c.MAC)
	}
	return fmt.Sprintf("%s(%s)", c.Op, c.IP)
}

type probeAnswer struct {
	holder net.HardwareAddr
	err    error
}

type resolveAnswer struct {
	mac net.HardwareAddr
	err error
}

// Client is a fake arp.Client; create it with New. It is safe for
// concurrent use.
type Client struct {
	hw net.HardwareAddr

	mu          sync.Mutex
	probes      map[netip.Addr]probeAnswer
	resolves    map[netip.Addr]resolveAnswer
	announceErr error
	calls       []Call
}

var _ arp.Client = (*Client)(nil)

// New returns a fake for an interface with MAC hw. Until told otherwise,
// every address probes free and no address answers Resolve.
func New(hw net.HardwareAddr) *Client {
	return &Client{
		hw:       slices.Clone(hw),
		probes:   map[netip.Addr]probeAnswer{},
		resolves: map[netip.Addr]resolveAnswer{},
	}
}

// SetProbe sets the answer of later probes for ip: held by holder (nil:
// free), or the error err.
func (c *Client) SetProbe(ip netip.Addr, holder net.HardwareAddr, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.probes[ip] = probeAnswer{holder: slices.Clone(holder), err: err}
}

// SetResolve sets the answer of later Resolve calls for ip: mac, or when
// mac is nil the error err (nil err means arp.ErrNoReply).
func (c *Client) SetResolve(ip netip.Addr, mac net.HardwareAddr, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.resolves[ip] = resolveAnswer{mac: slices.Clone(mac), err: err}
}

// SetAnnounceErr makes later Announce calls fail with err (nil: succeed).
func (c *Client) SetAnnounceErr(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.announceErr = err
}

// HardwareAddr returns the MAC given to New.
func (c *Client) HardwareAddr() net.HardwareAddr { return slices.Clone(c.hw) }

// Probe answers from SetProbe at once (it does not wait count×interval).
// A cancelled ctx is reported as its error.
func (c *Client) Probe(ctx context.Context, ip netip.Addr, count int, interval time.Duration) (bool, net.HardwareAddr, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a := c.probes[ip]
	err := a.err
	if cerr := ctx.Err(); cerr != nil {
		err = cerr
	}
	call := Call{Op: OpProbe, IP: ip, Count: count, Interval: interval, Err: err}
	if err != nil {
		c.calls = append(c.calls, call)
		return false, nil, err
	}
	call.MAC = slices.Clone(a.holder)
	c.calls = append(c.calls, call)
	return a.holder != nil, slices.Clone(a.holder), nil
}

// Announce records the announcement.
func (c *Client) Announce(ip netip.Addr, mac net.HardwareAddr) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, Call{Op: OpAnnounce, IP: ip, MAC: slices.Clone(mac), Err: c.announceErr})
	return c.announceErr
}

// Resolve answers from SetResolve at once; an address never set, or set
// without MAC and error, fails with an error wrapping arp.ErrNoReply.
func (c *Client) Resolve(ctx context.Context, ip netip.Addr) (net.HardwareAddr, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a := c.resolves[ip]
	err := a.err
	if a.mac == nil && err == nil {
		err = fmt.Errorf("arptest: resolve %s: %w", ip, arp.ErrNoReply)
	}
	if cerr := ctx.Err(); cerr != nil {
		err = cerr
	}
	if err != nil {
		c.calls = append(c.calls, Call{Op: OpResolve, IP: ip, Err: err})
		return nil, err
	}
	c.calls = append(c.calls, Call{Op: OpResolve, IP: ip, MAC: slices.Clone(a.mac)})
	return slices.Clone(a.mac), nil
}

// Calls returns a copy of the calls so far, in order.
func (c *Client) Calls() []Call {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.calls)
}

// Announcements returns the Announce calls so far, in order.
func (c *Client) Announcements() []Call {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Call
	for _, call := range c.calls {
		if call.Op == OpAnnounce {
			out = append(out, call)
		}
	}
	return out
}
