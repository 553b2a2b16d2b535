package config

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/pairguard/pairguard/firmware/arbiter"
	"github.com/pairguard/pairguard/firmware/engine"
)

// ModeArbiter is `mode = "arbiter"`: the binary serves as the arbiter of
// one or more pairs instead of being a node (README, "The arbiter").
const ModeArbiter = "arbiter"

// DefaultArbiterPort is the arbiter's UDP port when `[arbiter] listen`
// (on the arbiter) or the port of `[arbiter] address` (on a node) is left
// out. It is not a registered port of any common service.
const DefaultArbiterPort = 7405

// Arbiter is the [arbiter] table. On a node (mode main or spare) only
// address is set; on the arbiter (mode arbiter) listen and the pairs.
type Arbiter struct {
	// Address is the arbiter a node asks for leases, "HOST:PORT" or
	// "HOST" (port 7405). Default: none, the node runs without arbiter.
	Address string `toml:"address"`
	// Listen is the UDP address the arbiter serves on (default ":7405",
	// every address).
	Listen string `toml:"listen"`
	// Pairs are the [[arbiter.pair]] tables: one per pair served, each
	// with the key printed by `pairguard arbiter-key` on one of its nodes.
	Pairs []ArbiterPair `toml:"pair"`

	// Derived by Validate.
	Keys [][]byte `toml:"-"` // the pairs' arbiter keys, in the file's order
}

// ArbiterPair is one [[arbiter.pair]] table.
type ArbiterPair struct {
	Key string `toml:"key"` // hexadecimal, from `pairguard arbiter-key`
}

// IsArbiter reports whether the config is that of an arbiter.
func (c *Config) IsArbiter() bool { return c.Mode == ModeArbiter }

// defaultsArbiter fills in the arbiter's defaults.
func (c *Config) defaultsArbiter() {
	a := &c.Arbiter
	if c.IsArbiter() && a.Listen == "" {
		a.Listen = fmt.Sprintf(":%d", DefaultArbiterPort)
	}
	if a.Address != "" {
		if _, _, err := net.SplitHostPort(a.Address); err != nil {
			a.Address = net.JoinHostPort(a.Address, strconv.Itoa(DefaultArbiterPort))
		}
	}
}

// checkArbiter checks [arbiter] against the mode.
func (c *Config) checkArbiter(p *problems, paired bool) {
	a := &c.Arbiter
	if c.IsArbiter() {
		if a.Address != "" {
			p.bad("arbiter.address", "is for the nodes of a pair; an arbiter sets arbiter.listen")
		}
		if err := checkHostPort(a.Listen, true); err != nil {
			p.bad("arbiter.listen", "%v", err)
		}
		if len(a.Pairs) == 0 {
			p.bad("arbiter", "an arbiter needs at least one [[arbiter.pair]] key")
		}
		seen := map[uint32]int{}
		for i, pr := range a.Pairs {
			key := fmt.Sprintf("arbiter.pair.%d.key", i)
			k, err := arbiter.ParseKey(pr.Key)
			if err != nil {
				p.bad(key, "%v (use the key printed by `pairguard arbiter-key --config FILE` on a node of the pair)", err)
				continue
			}
			id := arbiter.PairID(k)
			if j, dup := seen[id]; dup {
				p.bad(key, "the same pair as arbiter.pair.%d", j)
			}
			seen[id] = i
		}
		return
	}
	if a.Listen != "" {
		p.bad("arbiter.listen", "only in mode arbiter")
	}
	if len(a.Pairs) > 0 {
		p.bad("arbiter.pair", "only in mode arbiter")
	}
	if a.Address == "" {
		return
	}
	if !paired {
		p.bad("arbiter.address", "only in mode main or spare, not %s", c.Mode)
	}
	if err := checkHostPort(a.Address, false); err != nil {
		p.bad("arbiter.address", "%v", err)
	}
}

// checkHostPort checks "HOST:PORT"; the host may be empty only for a
// listening address.
func checkHostPort(s string, listen bool) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("not HOST:PORT: %q", s)
	}
	least := 1
	if listen {
		least = 0 // any free port (tests)
	}
	if n, err := strconv.Atoi(port); err != nil || n < least || n > 65535 {
		return fmt.Errorf("not a UDP port: %q", port)
	}
	if host == "" && !listen {
		return fmt.Errorf("needs a host: %q", s)
	}
	return nil
}

// deriveArbiter fills the arbiter's keys and the engine's part of [arbiter].
func (c *Config) deriveArbiter() {
	c.Arbiter.Keys = nil
	for _, pr := range c.Arbiter.Pairs {
		k, _ := arbiter.ParseKey(pr.Key)
		c.Arbiter.Keys = append(c.Arbiter.Keys, k)
	}
	if c.Arbiter.Address != "" && !c.IsArbiter() {
		c.Engine.Arbiter = engine.ArbiterConfig{Enabled: true, ReleaseMargin: c.ReleaseMargin()}
	}
}

// ReleaseMargin is how long before its lease ends a node without its peer
// releases the service address: engine.DefaultReleaseMargin (100 ms), or
// half the failover-time when that is shorter (fast heartbeats come with a
// fast tick, and the engine needs the margin under failover-time).
func (c *Config) ReleaseMargin() time.Duration {
	return min(engine.DefaultReleaseMargin, c.Heartbeat.FailoverTime.Duration/2)
}

// ArbiterLease is the lease a node asks for: its failover-time plus
// arbiter.LeaseOverFailover. With the defaults, a main that loses its power
// just after a renewal is replaced within failover-time + 1 s (see the
// arbiter package's defaults).
func (c *Config) ArbiterLease() time.Duration {
	return c.Heartbeat.FailoverTime.Duration + arbiter.LeaseOverFailover
}
