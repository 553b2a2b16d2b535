package arp

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// GARPConfig is the `[garp]` section: how announcements are repeated.
type GARPConfig struct {
	// Repeat is the number of announcements in the burst that follows a
	// claim, the first one at once (>= 1).
	Repeat int
	// Interval separates the announcements of the burst (> 0 when Repeat > 1).
	Interval time.Duration
	// Refresh, when positive, sends one more announcement every Refresh
	// after the burst for as long as the scheduler is active; 0 disables it.
	Refresh time.Duration
}

// Validate checks the relations between the fields; errors name the config keys.
func (c GARPConfig) Validate() error {
	if c.Repeat < 1 {
		return fmt.Errorf("arp: garp.repeat = %d: must be at least 1", c.Repeat)
	}
	if c.Repeat > 1 && c.Interval <= 0 {
		return fmt.Errorf("arp: garp.interval = %v: must be positive when garp.repeat > 1", c.Interval)
	}
	if c.Refresh < 0 {
		return fmt.Errorf("arp: garp.refresh = %v: must not be negative", c.Refresh)
	}
	return nil
}

// GARP repeats gratuitous ARP for the service address while the node is
// primary: Start after claiming the address, Stop before releasing it. Each
// announcement is one Announcer.Announce call (both ARP forms). Failed
// announcements are logged at Warn and the schedule goes on. GARP is safe
// for concurrent use.
type GARP struct {
	a   Announcer
	cfg GARPConfig
	log *slog.Logger

	mu   sync.Mutex
	stop chan struct{} // nil when inactive
	done chan struct{}
}

// NewGARP returns an inactive scheduler driving a.
func NewGARP(a Announcer, cfg GARPConfig, log *slog.Logger) (*GARP, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &GARP{a: a, cfg: cfg, log: log}, nil
}

// Start begins the burst for ip with mac (nil: the interface's MAC). The
// first announcement is sent at once, from the scheduler's goroutine. If the
// scheduler is active it is stopped first, so Start also restarts a burst
// (after a link came back, say).
func (g *GARP) Start(ip netip.Addr, mac net.HardwareAddr) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.stopLocked()
	g.stop = make(chan struct{})
	g.done = make(chan struct{})
	go g.run(ip, slices.Clone(mac), 0, g.stop, g.done)
}

// StartNow is Start with the first announcement sent before it returns,
// from the caller's goroutine, not the scheduler's: a takeover's first
// announcement then waits for no goroutine to be scheduled (0.3-0.8 ms on
// a loaded machine, or on one Go processor busy with the caller's work).
// A failed first announcement is logged like the others.
func (g *GARP) StartNow(ip netip.Addr, mac net.HardwareAddr) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.stopLocked()
	mac = slices.Clone(mac)
	g.announce(ip, mac, 1)
	g.stop = make(chan struct{})
	g.done = make(chan struct{})
	go g.run(ip, mac, 1, g.stop, g.done)
}

// Stop ends the schedule and waits for the goroutine, so no announcement is
// sent after Stop returns. Stopping an inactive scheduler does nothing.
func (g *GARP) Stop() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.stopLocked()
}

func (g *GARP) stopLocked() {
	if g.stop == nil {
		return
	}
	close(g.stop)
	<-g.done
	g.stop, g.done = nil, nil
}

// run sends the announcements after the first sent ones.
func (g *GARP) run(ip netip.Addr, mac net.HardwareAddr, sent int, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	for n := sent; ; n++ {
		if n > 0 {
			var wait time.Duration
			switch {
			case n < g.cfg.Repeat:
				wait = g.cfg.Interval
			case g.cfg.Refresh > 0:
				wait = g.cfg.Refresh
			default:
				return
			}
			t := time.NewTimer(wait)
			select {
			case <-stop:
				t.Stop()
				return
			case <-t.C:
			}
		}
		g.announce(ip, mac, n+1)
	}
}

func (g *GARP) announce(ip netip.Addr, mac net.HardwareAddr, n int) {
	if err := g.a.Announce(ip, mac); err != nil {
		g.log.Warn("gratuitous ARP failed", "ip", ip, "n", n, "err", err)
	}
}
