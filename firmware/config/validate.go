package config

import (
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
	DefaultPairWindow     = 5 * time.Minute
)

// The minimums of periods that run a command or a loop: below them a node
// busy-loops or forks without pause. MaxBlockSize is the sdcard package's
// largest block (sdcard/device.go).
const (
	MinWitnessInterval = 100 * time.Millisecond
	MinGARPInterval    = 10 * time.Millisecond
	MinGARPRefresh     = time.Second
	MinCheckInterval   = 100 * time.Millisecond
	MinScanInterval    = 100 * time.Millisecond
	MinHookTimeout     = 100 * time.Millisecond
	MinBlockSize       = 4096
	MaxBlockSize       = 1 << 20
)

// Validate completes a decoded config in four steps: load reads what the
// file points at (the key file, the board description, the host name),
// defaults fills in what the file leaves out, check runs the pure checks
// of each section, and derive builds the engine's config. Errors name the
// key and its line; all of them are reported together.
func (c *Config) Validate() error {
	if err := c.load(); err != nil {
		return err
	}
	c.defaults()
	if err := c.check(); err != nil {
		return err
	}
	return c.derive()
}

// load does the I/O: the pair key file, the board description, the host name.
func (c *Config) load() error {
	var errs []error
	bad := func(key, format string, args ...any) { errs = append(errs, c.errf(key, format, args...)) }
	if c.NodeName == "" {
		c.NodeName, _ = os.Hostname()
	}
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
		}
	}
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
	return errors.Join(errs...)
}

// defaults fills in every key the file leaves out; the board's entries
// come before the built-in defaults.
func (c *Config) defaults() {
	set := func(v *string, def string) {
		if *v == "" {
			*v = def
		}
	}
	setD := func(v *Duration, def time.Duration) {
		if v.Duration == 0 {
			v.Duration = def
		}
	}
	setI := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	set(&c.Mode, "independent")
	set(&c.Recovery, "manual")
	set(&c.OnLineLoss, "probe")
	set(&c.Standby, "cold")
	if c.Nice == nil {
		n := -10
		c.Nice = &n
	}
	c.defaultsRuntime()
	set(&c.StateDir, DefaultStateDir)
	setD(&c.PairWindow, DefaultPairWindow)
	set(&c.Control.Socket, DefaultSocket)
	if b := c.BoardDesc; b != nil {
		set(&c.LAN1.Interface, b.LAN1)
		set(&c.LAN2.Interface, b.LAN2)
		if c.Datastore != nil {
			set(&c.Datastore.Device, b.Datastore)
		}
		if c.Watchdog.Device == "" {
			c.Watchdog.Device = b.Watchdog.Device
			setD(&c.Watchdog.Timeout, b.Watchdog.Timeout)
		}
	}
	setD(&c.LAN1.WitnessEvery, time.Second)

	hb := &c.Heartbeat
	setD(&hb.Interval, DefaultInterval)
	setI(&hb.Missed, DefaultMissed)
	setD(&hb.FailoverTime, hb.Interval.Duration*time.Duration(hb.Missed))
	setD(&hb.ConnectionWait, max(DefaultConnectionWait, hb.FailoverTime.Duration))
	setD(&hb.LAN1Interval, hb.FailoverTime.Duration*2/5)
	setD(&c.LAN1.ProbeTime, min(DefaultProbeTime, hb.FailoverTime.Duration/5))

	setI(&c.GARP.Repeat, 3)
	setD(&c.GARP.Interval, 100*time.Millisecond)
	if !c.lineSet("garp.refresh") {
		setD(&c.GARP.Refresh, 30*time.Second)
	}
	set(&c.Hooks.Dir, DefaultHooksDir)
	setD(&c.Hooks.Timeout, DefaultHookTimeout)
	for i := range c.Checks {
		ch := &c.Checks[i]
		set(&ch.Name, fmt.Sprintf("check%d", i+1))
		setD(&ch.Interval, 2*time.Second)
		setI(&ch.Fall, 3)
		setI(&ch.Rise, 2)
	}
	setD(&c.Watchdog.Timeout, 10*time.Second)
	setI(&c.Logbook.Entries, 1000)
	c.defaultsArbiter()
	if d := c.Datastore; d != nil {
		setI(&d.BlockSize, DefaultBlockSize)
		set(&d.Mode, "periodic")
		setD(&d.Interval, time.Minute)
		set(&d.Replication, "sync")
		set(&d.OnCongestion, "block")
		set(&d.SplitBrain, "discard-zero-changes")
		set(&d.Compression, "off")
		setI(&d.Port, DefaultMirrorPort)
	}
}

// problems collects the errors of the checks, each naming its key.
type problems struct {
	c    *Config
	errs []error
}

func (p *problems) bad(key, format string, args ...any) {
	p.errs = append(p.errs, p.c.errf(key, format, args...))
}

// atLeast reports key when a duration is below its minimum.
func (p *problems) atLeast(key string, v Duration, least time.Duration) {
	if v.Duration < least {
		p.bad(key, "%v is below the minimum of %v", v.Duration, least)
	}
}

// check runs the checks of every section; none does I/O or changes c.
func (c *Config) check() error {
	p := &problems{c: c}
	mode, _ := engine.ParseMode(c.Mode)
	paired := mode == engine.ModeMain || mode == engine.ModeSpare
	c.checkTop(p, paired)
	c.checkLAN1(p, paired)
	c.checkLAN2(p, paired)
	c.checkHeartbeat(p)
	c.checkRuntime(p)
	c.checkGARP(p)
	c.checkHooks(p)
	c.checkChecks(p)
	c.checkDatastore(p, paired)
	c.checkArbiter(p, paired)
	if c.Watchdog.Timeout.Duration < time.Second {
		p.bad("watchdog.timeout", "must be at least 1s")
	}
	if c.Logbook.Entries < 10 {
		p.bad("logbook.entries", "must be at least 10")
	}
	return errors.Join(p.errs...)
}

func (c *Config) checkTop(p *problems, paired bool) {
	if _, err := engine.ParseMode(c.Mode); err != nil && !c.IsArbiter() {
		p.bad("mode", "must be independent, main, spare or arbiter, not %q", c.Mode)
	}
	if _, err := engine.ParseRecovery(c.Recovery); err != nil {
		p.bad("recovery", "must be automatic or manual, not %q", c.Recovery)
	}
	if _, err := engine.ParseLineLoss(c.OnLineLoss); err != nil {
		p.bad("on-line-loss", "must be probe or takeover, not %q", c.OnLineLoss)
	}
	if c.Standby != "cold" && c.Standby != "warm" {
		p.bad("standby", "must be cold or warm, not %q", c.Standby)
	}
	if *c.Nice < -20 || *c.Nice > 19 {
		p.bad("nice", "must be between -20 and 19, not %d", *c.Nice)
	}
	if !filepath.IsAbs(c.StateDir) {
		p.bad("state-dir", "must be an absolute path, not %q", c.StateDir)
	}
	if c.Board == "" && len(c.Panel) > 0 {
		p.bad("panel", "overrides need a board")
	}
	if paired && len(c.Key) > 0 && len(c.Key) < 16 {
		key := "pair-key"
		if c.PairKeyFile != "" {
			key = "pair-key-file"
		}
		p.bad(key, "the pair key must have at least 16 characters (both nodes share it); leave it out to teach the pair in with pair begin/join")
	}
	if c.PairWindow.Duration < 30*time.Second || c.PairWindow.Duration > time.Hour {
		p.bad("pair-window", "%v must be between 30s and 1h", c.PairWindow.Duration)
	}
}

func (c *Config) checkLAN1(p *problems, paired bool) {
	l := &c.LAN1
	if paired && l.Interface == "" {
		p.bad("lan1.interface", "required in mode %s", c.Mode)
	}
	if l.ServiceAddress != "" {
		if a, err := parsePrefix(l.ServiceAddress, 32); err != nil || !a.Addr().Is4() {
			p.bad("lan1.service-address", "must be an IPv4 address with an optional prefix length, not %q", l.ServiceAddress)
		}
	}
	if l.ServiceAddr6 != "" {
		if a, err := parsePrefix(l.ServiceAddr6, 128); err != nil || !a.Addr().Is6() {
			p.bad("lan1.service-address6", "must be an IPv6 address, not %q", l.ServiceAddr6)
		}
	}
	if l.Witness != "" {
		if a, err := netip.ParseAddr(l.Witness); err != nil || !a.Is4() {
			p.bad("lan1.witness", "must be an IPv4 address, not %q", l.Witness)
		}
	}
	p.atLeast("lan1.witness-interval", l.WitnessEvery, MinWitnessInterval)
	if 3*l.ProbeTime.Duration > c.Heartbeat.FailoverTime.Duration {
		p.bad("lan1.probe-time", "%v must be at most a third of heartbeat.failover-time (%v): the probe starts twice probe-time before it", l.ProbeTime, c.Heartbeat.FailoverTime)
	}
}

func (c *Config) checkLAN2(p *problems, paired bool) {
	l := &c.LAN2
	if paired && l.Interface == "" {
		p.bad("lan2.interface", "required in mode %s", c.Mode)
	}
	if l.Address != "" {
		if _, err := parsePrefix(l.Address, 32); err != nil {
			p.bad("lan2.address", "not an address: %q", l.Address)
		}
	}
	if l.PeerAddress != "" {
		if _, err := netip.ParseAddr(l.PeerAddress); err != nil {
			p.bad("lan2.peer-address", "not an address: %q", l.PeerAddress)
		}
	}
	if paired && c.LAN1.Interface != "" && c.LAN1.Interface == l.Interface {
		p.bad("lan2.interface", "the failover line must not be the LAN 1 interface %q", c.LAN1.Interface)
	}
}

func (c *Config) checkHeartbeat(p *problems) {
	hb := &c.Heartbeat
	if hb.Interval.Duration < time.Millisecond {
		p.bad("heartbeat.interval", "must be at least 1ms")
	}
	if hb.Missed < 2 {
		p.bad("heartbeat.missed", "must be at least 2, not %d", hb.Missed)
	}
	if hb.FailoverTime.Duration < 2*hb.Interval.Duration {
		p.bad("heartbeat.failover-time", "%v must be at least twice heartbeat.interval (%v)", hb.FailoverTime, hb.Interval)
	}
	if hb.ConnectionWait.Duration < hb.FailoverTime.Duration {
		p.bad("heartbeat.connection-wait-time", "%v must be at least heartbeat.failover-time (%v)", hb.ConnectionWait, hb.FailoverTime)
	}
	if 2*hb.LAN1Interval.Duration > hb.FailoverTime.Duration {
		p.bad("heartbeat.lan1-interval", "%v must be at most half of heartbeat.failover-time (%v), or a cut failover line looks like a dead peer", hb.LAN1Interval, hb.FailoverTime)
	}
}

func (c *Config) checkGARP(p *problems) {
	g := &c.GARP
	if g.Repeat < 1 || g.Repeat > 100 {
		p.bad("garp.repeat", "must be between 1 and 100, not %d", g.Repeat)
	}
	p.atLeast("garp.interval", g.Interval, MinGARPInterval)
	if g.Refresh.Duration != 0 && g.Refresh.Duration < MinGARPRefresh {
		p.bad("garp.refresh", "%v is below the minimum of %v (\"0s\" turns the refresh off)", g.Refresh.Duration, MinGARPRefresh)
	}
}

func (c *Config) checkHooks(p *problems) {
	p.atLeast("hooks.timeout", c.Hooks.Timeout, MinHookTimeout)
}

func (c *Config) checkChecks(p *problems) {
	seen := map[string]bool{}
	for i, ch := range c.Checks {
		key := fmt.Sprintf("check.%d", i)
		if strings.TrimSpace(ch.Command) == "" {
			p.bad(key+".command", "a check needs a command")
		}
		if seen[ch.Name] {
			p.bad(key+".name", "two checks are named %q; each is tracked by its name", ch.Name)
		}
		seen[ch.Name] = true
		p.atLeast(key+".interval", ch.Interval, MinCheckInterval)
		if ch.Fall < 1 || ch.Rise < 1 {
			p.bad(key+".fall", "fall and rise must be at least 1")
		}
	}
}

func (c *Config) checkDatastore(p *problems, paired bool) {
	d := c.Datastore
	if d == nil {
		return
	}
	if d.Device == "" {
		p.bad("datastore.device", "required when [datastore] is present")
	}
	if d.BlockSize < MinBlockSize || d.BlockSize&(d.BlockSize-1) != 0 || d.BlockSize > MaxBlockSize {
		p.bad("datastore.block-size", "must be a power of two between 4096 and 1 MiB (the mirror's limit, %d), not %d", MaxBlockSize, d.BlockSize)
	}
	switch {
	case d.Mode == "online" && d.NBDSocket == "" && d.NBDDevice == "":
		p.bad("datastore.mode", "online needs nbd-socket or nbd-device: the applications must reach the datastore through the export, or no write is replicated")
	case d.Mode == "periodic" && (d.NBDSocket != "" || d.NBDDevice != ""):
		p.bad("datastore.nbd-socket", "nbd-socket and nbd-device are for mode online")
	case d.Mode != "online" && d.Mode != "periodic":
		p.bad("datastore.mode", "must be online or periodic, not %q", d.Mode)
	}
	if d.SplitBrain != "discard-zero-changes" && d.SplitBrain != "manual" {
		p.bad("datastore.split-brain", "must be discard-zero-changes or manual, not %q", d.SplitBrain)
	}
	if d.Compression != "off" && d.Compression != "zstd" {
		p.bad("datastore.compression", "must be off or zstd, not %q", d.Compression)
	}
	p.atLeast("datastore.interval", d.Interval, MinScanInterval)
	if d.OnCongestion != "block" && d.OnCongestion != "pull-ahead" {
		p.bad("datastore.on-congestion", "must be block or pull-ahead, not %q", d.OnCongestion)
	}
	if d.Replication != "sync" && d.Replication != "async" {
		p.bad("datastore.replication", "must be sync or async, not %q", d.Replication)
	}
	if d.Port < 1 || d.Port > 65535 {
		p.bad("datastore.port", "not a TCP port: %d", d.Port)
	}
	if _, err := ParseBandwidth(d.Bandwidth); err != nil {
		p.bad("datastore.bandwidth", "%v", err)
	}
	if paired && (c.LAN2.Address == "" || c.LAN2.PeerAddress == "") {
		p.bad("lan2.peer-address", "the datastore mirror needs lan2.address and lan2.peer-address")
	}
}

// derive fills the fields computed from the checked keys: the addresses
// and the engine's config, which checks the relations of its timers.
func (c *Config) derive() error {
	c.LAN1.Prefix, _ = parsePrefixIf(c.LAN1.ServiceAddress, 32)
	c.LAN1.Prefix6, _ = parsePrefixIf(c.LAN1.ServiceAddr6, 128)
	if c.LAN1.Witness != "" {
		c.LAN1.WitAddr, _ = netip.ParseAddr(c.LAN1.Witness)
	}
	c.LAN2.Prefix, _ = parsePrefixIf(c.LAN2.Address, 32)
	if c.LAN2.PeerAddress != "" {
		c.LAN2.Peer, _ = netip.ParseAddr(c.LAN2.PeerAddress)
	}
	if c.IsArbiter() {
		// An arbiter runs no engine.
		c.deriveArbiter()
		return nil
	}
	mode, _ := engine.ParseMode(c.Mode)
	rec, _ := engine.ParseRecovery(c.Recovery)
	loss, _ := engine.ParseLineLoss(c.OnLineLoss)
	preferred := mode == engine.ModeMain
	if c.Preferred != nil {
		preferred = *c.Preferred
	}
	hb := c.Heartbeat
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
	c.deriveArbiter()
	if err := c.Engine.Validate(); err != nil {
		return fmt.Errorf("%s: %w", c.file, err)
	}
	return nil
}

func parsePrefixIf(s string, bits int) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, nil
	}
	return parsePrefix(s, bits)
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
	same("arbiter.address", c.Arbiter.Address, next.Arbiter.Address)
	same("arbiter.listen", c.Arbiter.Listen, next.Arbiter.Listen)
	same("heartbeat.rt-priority", c.Heartbeat.RTPriority, next.Heartbeat.RTPriority)
	same("heartbeat.lock-memory", c.Heartbeat.LockMemory, next.Heartbeat.LockMemory)
	same("memory-limit", c.MemoryLimit, next.MemoryLimit)
	return errors.Join(errs...)
}

func datastoreString(d *Datastore) string {
	if d == nil {
		return "none"
	}
	return fmt.Sprintf("%+v", *d)
}
