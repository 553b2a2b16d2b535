// Package config reads and validates pairguard.toml.
//
// Every key, its default and its meaning are listed in Defaults' comments and
// in the README. An invalid file is refused as a whole: Load returns an error
// naming the file, the line and the key, and the daemon does not start.
package config

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/pairguard/pairguard/board"
	"github.com/pairguard/pairguard/firmware/engine"
)

// Duration is a TOML string such as "100ms" or "3s".
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("not a duration (use a string such as \"100ms\" or \"3s\"): %q", b)
	}
	if v < 0 {
		return fmt.Errorf("negative duration %q", b)
	}
	d.Duration = v
	return nil
}

// MarshalText writes the duration back as a string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Config is the whole configuration file.
type Config struct {
	Mode        string `toml:"mode"`          // independent | main | spare | arbiter (default independent)
	NodeName    string `toml:"node-name"`     // shown in status and the logbook (default: the host name)
	StateDir    string `toml:"state-dir"`     // epoch, metadata, logbook, keys (default /var/lib/pairguard)
	PairKey     string `toml:"pair-key"`      // the pair's shared secret, at least 16 characters
	PairKeyFile string `toml:"pair-key-file"` // or a file holding it (first line)
	Board       string `toml:"board"`         // board description, e.g. "qemu-virt-arm64" (default: none)
	Recovery    string `toml:"recovery"`      // automatic | manual (default manual)
	Preferred   *bool  `toml:"preferred"`     // the preferred primary (default: true in mode main)
	OnLineLoss  string `toml:"on-line-loss"`  // probe | takeover (default probe)
	Standby     string `toml:"standby"`       // cold | warm: the hooks' standby level (default cold)
	Nice        *int   `toml:"nice"`          // scheduling priority of the daemon (default -10)
	MemoryLimit string `toml:"memory-limit"`  // the Go runtime's soft memory limit (default DefaultMemoryLimit)
	Software    string `toml:"-"`

	// PairWindow: how long a pairing window (main) or a join (spare) stays
	// open, approval included (default 5m). Without pair-key and
	// pair-key-file a main or spare is taught in (pair begin/join).
	PairWindow Duration `toml:"pair-window"`

	Control   Control           `toml:"control"`
	LAN1      LAN1              `toml:"lan1"`
	LAN2      LAN2              `toml:"lan2"`
	Heartbeat Heartbeat         `toml:"heartbeat"`
	Datastore *Datastore        `toml:"datastore"`
	GARP      GARP              `toml:"garp"`
	Hooks     Hooks             `toml:"hooks"`
	Checks    []Check           `toml:"check"`
	Watchdog  Watchdog          `toml:"watchdog"`
	Panel     map[string]string `toml:"panel"` // overrides of single board entries, e.g. "led.failover" = "gpiochip0:5"
	Logbook   Logbook           `toml:"logbook"`
	Arbiter   Arbiter           `toml:"arbiter"`

	// Derived by Validate.
	BoardDesc *board.Board  `toml:"-"`
	Engine    engine.Config `toml:"-"`
	Key       []byte        `toml:"-"`

	file  string
	src   []byte
	lines map[string]int
}

// Control is the [control] table.
type Control struct {
	Socket string `toml:"socket"` // default /run/pairguard.sock
}

// LAN1 is the [lan1] table: the site network.
type LAN1 struct {
	Interface      string   `toml:"interface"`       // required in main and spare mode
	ServiceAddress string   `toml:"service-address"` // e.g. "192.168.1.10/24" (a bare address means /32)
	ServiceAddr6   string   `toml:"service-address6"`
	Witness        string   `toml:"witness"`     // an IPv4 address that must answer ARP (default: none)
	VirtualMAC     bool     `toml:"virtual-mac"` // put the address on a macvlan with a MAC derived from the pair id
	ProbeTime      Duration `toml:"probe-time"`  // how long the ARP probe waits for an answer (default 50ms)
	WitnessEvery   Duration `toml:"witness-interval"`

	Prefix  netip.Prefix `toml:"-"`
	Prefix6 netip.Prefix `toml:"-"`
	WitAddr netip.Addr   `toml:"-"`
}

// LAN2 is the [lan2] table: the failover line.
type LAN2 struct {
	Interface   string `toml:"interface"`    // required in main and spare mode
	Address     string `toml:"address"`      // this node's static address, e.g. "10.9.0.1/24"
	PeerAddress string `toml:"peer-address"` // the peer's static address (the mirror's TCP)

	Prefix netip.Prefix `toml:"-"`
	Peer   netip.Addr   `toml:"-"`
}

// Heartbeat is the [heartbeat] table.
type Heartbeat struct {
	Interval       Duration `toml:"interval"`             // default 100ms
	Missed         int      `toml:"missed"`               // default 5
	FailoverTime   Duration `toml:"failover-time"`        // default interval × missed
	ConnectionWait Duration `toml:"connection-wait-time"` // default 10s
	LAN1Interval   Duration `toml:"lan1-interval"`        // default 2/5 of failover-time
	RTPriority     int      `toml:"rt-priority"`          // SCHED_FIFO priority of the heartbeat path (default 0: off)
	LockMemory     bool     `toml:"lock-memory"`          // mlockall the daemon's pages at start (default false)
}

// Datastore is the [datastore] table; optional.
type Datastore struct {
	Device       string   `toml:"device"`        // block device or image file
	BlockSize    int      `toml:"block-size"`    // default 65536
	Mode         string   `toml:"mode"`          // online | periodic (default periodic)
	Interval     Duration `toml:"interval"`      // periodic scan interval (default 60s)
	Replication  string   `toml:"replication"`   // sync | async (default sync)
	Port         int      `toml:"port"`          // TCP port on LAN 2 (default 7788)
	Bandwidth    string   `toml:"bandwidth"`     // limit such as "50M" bytes/s (default: none)
	Freeze       string   `toml:"freeze"`        // mountpoint to FIFREEZE during a periodic scan
	SplitBrain   string   `toml:"split-brain"`   // discard-zero-changes | manual (default discard-zero-changes)
	OnCongestion string   `toml:"on-congestion"` // block | pull-ahead: an async write finding the peer's queue full waits, or is only marked (default block)
	Compression  string   `toml:"compression"`   // off | zstd: compress the data this node sends (default off)
	NBDSocket    string   `toml:"nbd-socket"`    // mode online: the export's Unix socket on the primary
	NBDDevice    string   `toml:"nbd-device"`    // mode online: /dev/nbdN attached to the export on the primary
}

// GARP is the [garp] table.
type GARP struct {
	Repeat   int      `toml:"repeat"`   // announcements after a claim (default 3)
	Interval Duration `toml:"interval"` // between them (default 100ms)
	Refresh  Duration `toml:"refresh"`  // re-announce while primary (default 30s; "0s" off)
}

// Hooks is the [hooks] table.
type Hooks struct {
	Dir     string   `toml:"dir"`     // default /etc/pairguard/hooks.d
	Timeout Duration `toml:"timeout"` // default 10s
}

// Check is one [[check]] table: a health check command.
type Check struct {
	Name     string   `toml:"name"`
	Command  string   `toml:"command"`  // run with sh -c
	Interval Duration `toml:"interval"` // default 2s
	Fall     int      `toml:"fall"`     // failures in a row that make it unhealthy (default 3)
	Rise     int      `toml:"rise"`     // successes in a row that make it healthy again (default 2)
}

// Watchdog is the [watchdog] table.
type Watchdog struct {
	Device  string   `toml:"device"`  // default: the board's, else none
	Timeout Duration `toml:"timeout"` // default 10s
}

// Logbook is the [logbook] table.
type Logbook struct {
	Entries int `toml:"entries"` // entries kept (default 1000)
}

// Error is a configuration error at a line of the file.
type Error struct {
	File string
	Line int // 0 when the key is not in the file (a default or a missing key)
	Key  string
	Msg  string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s: %s", e.File, e.Line, e.Key, e.Msg)
	}
	return fmt.Sprintf("%s: %s: %s", e.File, e.Key, e.Msg)
}

// Load reads, decodes and validates a config file.
func Load(path string) (*Config, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, src)
}

// Parse decodes and validates config text; name is used in errors.
func Parse(name string, src []byte) (*Config, error) {
	c := &Config{file: name, src: src}
	md, err := toml.NewDecoder(bytes.NewReader(src)).Decode(c)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			key := pe.LastKey
			if key == "" {
				key = "syntax"
			}
			return nil, &Error{File: name, Line: pe.Position.Line, Key: key, Msg: pe.Message}
		}
		return nil, fmt.Errorf("config: %s: %w", name, err)
	}
	c.lines = keyLines(src)
	var errs []error
	for _, k := range md.Undecoded() {
		key := k.String()
		if strings.HasPrefix(key, "panel.") {
			continue
		}
		errs = append(errs, c.errf(key, "unknown key"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Config) errf(key, format string, args ...any) *Error {
	return &Error{File: c.file, Line: c.lines[key], Key: key, Msg: fmt.Sprintf(format, args...)}
}

// keyLines maps "table.key" (and "key" at the top) to the line that sets it.
// Arrays of tables ([[check]]) are numbered "check.0.command".
func keyLines(src []byte) map[string]int {
	lines := map[string]int{}
	table := ""
	arrays := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(src))
	for n := 1; sc.Scan(); n++ {
		l := strings.TrimSpace(sc.Text())
		switch {
		case l == "" || l[0] == '#':
		case strings.HasPrefix(l, "[["):
			name := strings.TrimSpace(strings.Trim(l, "[] "))
			table = fmt.Sprintf("%s.%d", name, arrays[name])
			arrays[name]++
			lines[table] = n
		case l[0] == '[':
			table = strings.TrimSpace(strings.Trim(strings.SplitN(l, "#", 2)[0], "[] "))
			lines[table] = n
		default:
			k, _, ok := strings.Cut(l, "=")
			if !ok {
				continue
			}
			k = strings.Trim(strings.TrimSpace(k), `"`)
			if table != "" {
				k = table + "." + k
			}
			if _, seen := lines[k]; !seen {
				lines[k] = n
			}
		}
	}
	return lines
}

// Sets reports whether the file sets key ("table.key", or "key" at the
// top) itself, rather than leaving it to a default.
func (c *Config) Sets(key string) bool { return c.lineSet(key) }
