// Package ndptest is a fake ndp.Announcer for the daemon's unit tests.
package ndptest

import (
	"net"
	"net/netip"
	"slices"
	"sync"

	"github.com/pairguard/pairguard/drivers/ndp"
)

// Announcement is one recorded Announce call.
type Announcement struct {
	IP  netip.Addr
	MAC net.HardwareAddr
	Err error // what the call returned
}

// Announcer records announcements and can be told to fail. The zero value
// is ready to use and safe for concurrent use.
type Announcer struct {
	mu   sync.Mutex
	err  error
	sent []Announcement
}

var _ ndp.Announcer = (*Announcer)(nil)

// SetErr makes later Announce calls fail with err (nil: succeed).
func (a *Announcer) SetErr(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.err = err
}

// Announce records the call.
func (a *Announcer) Announce(ip netip.Addr, mac net.HardwareAddr) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.sent = append(a.sent, Announcement{IP: ip, MAC: slices.Clone(mac), Err: a.err})
	return a.err
}

// Announcements returns a copy of the calls so far, in order.
func (a *Announcer) Announcements() []Announcement {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.sent)
}
