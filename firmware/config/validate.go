package config

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pairguard/pairguard/board"
	"github.com/pairguard/pairguard/firmware/engine"
)

// The defaults, chosen for a busy 2-core ARM appliance: a heartbeat every
// 100 ms and 5 missed (500 ms) before the peer counts as dead. A loaded
// board's scheduler and garbage collector delay a heartbeat by tens of
// milliseconds, not by 400; five frames in a row lost at 1% loss happen once
// in 10^10 frames; and the ARP probe and LAN 1 path add a second opinion.
const (
	DefaultStateDir       = "/var/lib/pairguard"
	DefaultSocket         = "/run/pairguard.sock"
	DefaultInterval       = 100 * time.Millisecond
	DefaultMissed         = 5
	DefaultConnectionWait = 10 * time.Second
	DefaultProbeTime      = 50 * time.Millisecond
	DefaultHooksDir       = "/etc/pairguard/hooks.d"
	DefaultHookTimeout    = 10 * time.Second
	DefaultBlockSize      = 64 << 10
	DefaultMirrorPort     = 7788
)

// Validate fills in defaults, checks every key and the relations between
// keys, and derives the engine's config. Errors name the key and its line.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) { errs = append(errs, c.errf(key, format, args...)) }

	if c.Mode == "" {
		c.Mode = "independent"
	}
	mode, err := engine.ParseMode(c.Mode)
	if err != nil {
		bad("mode", "must be independent, main or spare, not %q", c.Mode)
	}
	if c.Recovery == "" {
		c.Recovery = "manual"
	}
	rec, err := engine.ParseRecovery(c.Recovery)
	if err != nil {
		bad("recovery", "must be automatic or manual, not %q", c.Recovery)
	}
	if c.OnLineLoss == "" {
		c.OnLineLoss = "probe"
	}
	loss, err := engine.ParseLineLoss(c.OnLineLoss)
	if err != nil {
		bad("on-line-loss", "must be probe or takeover, not %q", c.OnLineLoss)
	}
	if c.Nice == nil {
		n := -10
		c.Nice = &n
	}
	if *c.Nice < -20 || *c.Nice > 19 {
		bad("nice", "must be between -20 and 19, not %d", *c.Nice)
	}
	if c.NodeName == "" {
		c.NodeName, _ = os.Hostname()
	}
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	}
	if !filepath.IsAbs(c.StateDir) {
		bad("state-dir", "must be an absolute path, not %q", c.StateDir)
	}
	if c.Control.Socket == "" {
		c.Control.Socket = DefaultSocket
	}
	paired := mode == engine.ModeMain || mode == engine.ModeSpare

	// The board fills in what the config leaves out.
	if c.Board != "" {
		b, err := board.Load(c.Board, c.Panel)
		if err != nil {
			key := "board"
			var ke *board.KeyError
			if errors.As(err, &ke) && ke.Override {
				key = "panel." + ke.Key
			}
			bad(key, "%v", err)
		} else {
			c.BoardDesc = b
			if c.LAN1.Interface == "" {
				c.LAN1.Interface = b.LAN1
			}
			if c.LAN2.Interface == "" {
				c.LAN2.Interface = b.LAN2
			}
			if c.Datastore != nil && c.Datastore.Device == "" {
				c.Datastore.Device = b.Datastore
			}
			if c.Watchdog.Device == "" {
				c.Watchdog.Device = b.Watchdog.Device
				if c.Watchdog.Timeout.Duration == 0 {
					c.Watchdog.Timeout.Duration = b.Watchdog.Timeout
				}
			}
		}
	} else if len(c.Panel) > 0 {
		bad("panel", "overrides need a board")
	}

	// The pair key.
	switch {
	case c.PairKey != "" && c.PairKeyFile != "":
		bad("pair-key-file", "set either pair-key or pair-key-file, not both")
	case c.PairKeyFile != "":
		b, err := os.ReadFile(c.PairKeyFile)
		if err != nil {
			bad("pair-key-file", "%v", err)
		} else {
			c.Key = []byte(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
		}
	default:
		c.Key = []byte(c.PairKey)
	}
	if paired && len(c.Key) < 16 && (c.PairKeyFile == "" || len(errs) == 0) {
		key := "pair-key"
		if c.PairKeyFile != "" {
			key = "pair-key-file"
		}
		bad(key, "the pair key must have at least 16 characters (both nodes share it)")
	}

	// LAN 1.
	if paired && c.LAN1.Interface == "" {
		bad("lan1.interface", "required in mode %s", c.Mode)
	}
	if c.LAN1.ServiceAddress != "" {
		p, err := parsePrefix(c.LAN1.ServiceAddress, 32)
		if err != nil || !p.Addr().Is4() {
			bad("lan1.service-address", "must be an IPv4 address with an optional prefix length, not %q", c.LAN1.ServiceAddress)
		}
		c.LAN1.Prefix = p
	}
	if c.LAN1.ServiceAddr6 != "" {
		p, err := parsePrefix(c.LAN1.ServiceAddr6, 128)
		if err != nil || !p.Addr().Is6() {
			bad("lan1.service-address6", "must be an IPv6 address, not %q", c.LAN1.ServiceAddr6)
		}
		c.LAN1.Prefix6 = p
	}
	if c.LAN1.Witness != "" {
		a, err := netip.ParseAddr(c.LAN1.Witness)
		if err != nil || !a.Is4() {
			bad("lan1.witness", "must be an IPv4 address, not %q", c.LAN1.Witness)
		}
		c.LAN1.WitAddr = a
	}
	if c.LAN1.WitnessEvery.Duration == 0 {
		c.LAN1.WitnessEvery.Duration = time.Second
	}

	// LAN 2.
	if paired && c.LAN2.Interface == "" {
		bad("lan2.interface", "required in mode %s", c.Mode)
	}
	if c.LAN2.Address != "" {
		p, err := parsePrefix(c.LAN2.Address, 32)
		if err != nil {
			bad("lan2.address", "not an address: %q", c.LAN2.Address)
		}
		c.LAN2.Prefix = p
	}
	if c.LAN2.PeerAddress != "" {
		a, err := netip.ParseAddr(c.LAN2.PeerAddress)
		if err != nil {
			bad("lan2.peer-address", "not an address: %q", c.LAN2.PeerAddress)
		}
		c.LAN2.Peer = a
	}
	if paired && c.LAN1.Interface != "" && c.LAN1.Interface == c.LAN2.Interface {
		bad("lan2.interface", "the failover line must not be the LAN 1 interface %q", c.LAN1.Interface)
	}

	// Heartbeats.
	hb := &c.Heartbeat
	if hb.Interval.Duration == 0 {
		hb.Interval.Duration = DefaultInterval
	}
	if hb.Interval.Duration < time.Millisecond {
		bad("heartbeat.interval", "must be at least 1ms")
	}
	if hb.Missed == 0 {
		hb.Missed = DefaultMissed
	}
	if hb.Missed < 2 {
		bad("heartbeat.missed", "must be at least 2, not %d", hb.Missed)
	}
	if hb.FailoverTime.Duration == 0 {
		hb.FailoverTime.Duration = hb.Interval.Duration * time.Duration(hb.Missed)
	}
	if hb.FailoverTime.Duration < 2*hb.Interval.Duration {
		bad("heartbeat.failover-time", "%v must be at least twice heartbeat.interval (%v)", hb.FailoverTime, hb.Interval)
	}
	if hb.ConnectionWait.Duration == 0 {
		hb.ConnectionWait.Duration = max(DefaultConnectionWait, hb.FailoverTime.Duration)
	}
	if hb.ConnectionWait.Duration < hb.FailoverTime.Duration {
		bad("heartbeat.connection-wait-time", "%v must be at least heartbeat.failover-time (%v)", hb.ConnectionWait, hb.FailoverTime)
	}
	if hb.LAN1Interval.Duration == 0 {
		hb.LAN1Interval.Duration = hb.FailoverTime.Duration * 2 / 5
	}
	if 2*hb.LAN1Interval.Duration > hb.FailoverTime.Duration {
		bad("heartbeat.lan1-interval", "%v must be at most half of heartbeat.failover-time (%v), or a cut failover line looks like a dead peer", hb.LAN1Interval, hb.FailoverTime)
	}
	if c.LAN1.ProbeTime.Duration == 0 {
		c.LAN1.ProbeTime.Duration = min(DefaultProbeTime, hb.FailoverTime.Duration/5)
	}
	if 3*c.LAN1.ProbeTime.Duration > hb.FailoverTime.Duration {
		bad("lan1.probe-time", "%v must be at most a third of heartbeat.failover-time (%v): the probe starts twice probe-time before it", c.LAN1.ProbeTime, hb.FailoverTime)
	}

	// GARP.
	if c.GARP.Repeat == 0 {
		c.GARP.Repeat = 3
	}
	if c.GARP.Repeat < 1 || c.GARP.Repeat > 100 {
		bad("garp.repeat", "must be between 1 and 100, not %d", c.GARP.Repeat)
	}
	if c.GARP.Interval.Duration == 0 {
		c.GARP.Interval.Duration = 100 * time.Millisecond
	}
	if !c.lineSet("garp.refresh") && c.GARP.Refresh.Duration == 0 {
		c.GARP.Refresh.Duration = 30 * time.Second
	}

	// Hooks and checks.
	if c.Hooks.Dir == "" {
		c.Hooks.Dir = DefaultHooksDir
	}
	if c.Hooks.Timeout.Duration == 0 {
		c.Hooks.Timeout.Duration = DefaultHookTimeout
	}
	for i := range c.Checks {
		ch := &c.Checks[i]
		key := fmt.Sprintf("check.%d", i)
		if strings.TrimSpace(ch.Command) == "" {
			bad(key+".command", "a check needs a command")
		}
		if ch.Name == "" {
			ch.Name = fmt.Sprintf("check%d", i+1)
		}
		if ch.Interval.Duration == 0 {
			ch.Interval.Duration = 2 * time.Second
		}
		if ch.Fall == 0 {
			ch.Fall = 3
		}
		if ch.Rise == 0 {
			ch.Rise = 2
		}
		if ch.Fall < 1 || ch.Rise < 1 {
			bad(key+".fall", "fall and rise must be at least 1")
		}
	}
	if c.Watchdog.Timeout.Duration == 0 {
		c.Watchdog.Timeout.Duration = 10 * time.Second
	}
	if c.Watchdog.Timeout.Duration < time.Second {
		bad("watchdog.timeout", "must be at least 1s")
	}
	if c.Logbook.Entries == 0 {
		c.Logbook.Entries = 1000
	}
	if c.Logbook.Entries < 10 {
		bad("logbook.entries", "must be at least 10")
	}

	// The datastore.
	if d := c.Datastore; d != nil {
		if d.Device == "" {
			bad("datastore.device", "required when [datastore] is present")
		}
		if d.BlockSize == 0 {
			d.BlockSize = DefaultBlockSize
		}
		if d.BlockSize < 4096 || d.BlockSize&(d.BlockSize-1) != 0 || d.BlockSize > 16<<20 {
			bad("datastore.block-size", "must be a power of two between 4096 and 16 MiB, not %d", d.BlockSize)
		}
		if d.Mode == "" {
			d.Mode = "periodic"
		}
		if d.Mode == "online" {
			bad("datastore.mode", "online is not available yet: without the NBD front end no write reaches the mirror, so nothing would be replicated; use periodic")
		} else if d.Mode != "periodic" {
			bad("datastore.mode", "must be online or periodic, not %q", d.Mode)
		}
		if d.SplitBrain == "" {
			d.SplitBrain = "discard-zero-changes"
		}
		if d.SplitBrain != "discard-zero-changes" && d.SplitBrain != "manual" {
			bad("datastore.split-brain", "must be discard-zero-changes or manual, not %q", d.SplitBrain)
		}
		if d.Interval.Duration == 0 {
			d.Interval.Duration = time.Minute
		}
		if d.Replication == "" {
			d.Replication = "sync"
		}
		if d.Replication != "sync" && d.Replication != "async" {
			bad("datastore.replication", "must be sync or async, not %q", d.Replication)
		}
		if d.Port == 0 {
			d.Port = DefaultMirrorPort
		}
		if d.Port < 1 || d.Port > 65535 {
			bad("datastore.port", "not a TCP port: %d", d.Port)
		}
		if _, err := ParseBandwidth(d.Bandwidth); err != nil {
			bad("datastore.bandwidth", "%v", err)
		}
		if paired && (!c.LAN2.Prefix.IsValid() || !c.LAN2.Peer.IsValid()) {
			bad("lan2.peer-address", "the datastore mirror needs lan2.address and lan2.peer-address")
		}
	}

	preferred := mode == engine.ModeMain
	if c.Preferred != nil {
		preferred = *c.Preferred
	}
	c.Engine = engine.Config{
		Mode:       mode,
		Preferred:  preferred,
		Recovery:   rec,
		OnLineLoss: loss,
		Witness:    c.LAN1.WitAddr.IsValid(),
		Software:   c.Software,
		Durations: engine.Durations{
			Interval:       hb.Interval.Duration,
			LAN1Interval:   hb.LAN1Interval.Duration,
			FailoverTime:   hb.FailoverTime.Duration,
			ConnectionWait: hb.ConnectionWait.Duration,
			ProbeTimeout:   c.LAN1.ProbeTime.Duration,
		},
		NodeID: 1, // replaced by the daemon with the persisted node id
	}
	if len(errs) == 0 && mode != 0 {
		if err := c.Engine.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.file, err))
		}
	}
	return errors.Join(errs...)
}

func (c *Config) lineSet(key string) bool { return c.lines[key] > 0 }

func parsePrefix(s string, bits int) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		return netip.ParsePrefix(s)
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, bits), nil
}

// ParseBandwidth parses a rate in bytes per second such as "50M", "800K" or
// "1G" (powers of 1000); "" means unlimited (0).
func ParseBandwidth(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	mult := int64(1)
	switch s[len(s)-1] {
	case 'K', 'k':
		mult, s = 1000, s[:len(s)-1]
	case 'M', 'm':
		mult, s = 1000_000, s[:len(s)-1]
	case 'G', 'g':
		mult, s = 1000_000_000, s[:len(s)-1]
	}
	var n int64
	if _, err := fmt.Sscanf(s, "%d", &n); err != nil || n <= 0 {
		return 0, fmt.Errorf("not a rate such as \"50M\" (bytes per second): %q", s)
	}
	return n * mult, nil
}

// PairID derives a short identifier of the pair from its key, used to tell
// pairs apart on a shared failover switch and to derive the virtual MAC.
func PairID(key []byte) uint32 {
	h := sha256.Sum256(append([]byte("pairguard pair id\x00"), key...))
	return binary.BigEndian.Uint32(h[:4])
}

// File returns the path the config was read from.
func (c *Config) File() string { return c.file }

// Reloadable reports which differences between c and next a running daemon
// cannot apply without a restart; nil means next can be applied live.
func (c *Config) Reloadable(next *Config) error {
	var errs []error
	same := func(key string, a, b any) {
		if fmt.Sprint(a) != fmt.Sprint(b) {
			errs = append(errs, fmt.Errorf("%s: changes need a restart", key))
		}
	}
	same("mode", c.Mode, next.Mode)
	same("state-dir", c.StateDir, next.StateDir)
	same("pair-key", string(c.Key), string(next.Key))
	same("lan1.interface", c.LAN1.Interface, next.LAN1.Interface)
	same("lan1.service-address", c.LAN1.Prefix, next.LAN1.Prefix)
	same("lan1.virtual-mac", c.LAN1.VirtualMAC, next.LAN1.VirtualMAC)
	same("lan2.interface", c.LAN2.Interface, next.LAN2.Interface)
	same("control.socket", c.Control.Socket, next.Control.Socket)
	same("datastore", datastoreString(c.Datastore), datastoreString(next.Datastore))
	same("board", c.Board, next.Board)
	same("lan1.witness", c.LAN1.WitAddr, next.LAN1.WitAddr)
	same("garp", c.GARP, next.GARP)
	same("check", fmt.Sprintf("%+v", c.Checks), fmt.Sprintf("%+v", next.Checks))
	same("watchdog", c.Watchdog, next.Watchdog)
	same("panel", fmt.Sprintf("%v", c.Panel), fmt.Sprintf("%v", next.Panel))
	return errors.Join(errs...)
}

func datastoreString(d *Datastore) string {
	if d == nil {
		return "none"
	}
	return fmt.Sprintf("%+v", *d)
}
