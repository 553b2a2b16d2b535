package pairing

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/pairguard/pairguard/firmware/pairing/cpace"
)

// Settings are the main's pair-level settings, which the spare adopts at
// pairing time so that its own config needs only its mode, interfaces and
// LAN 2 address. Keys are the config keys of the README ("Configuration").
//
// Enumerations stay strings here (the config package validates them); an
// empty string or zero value means "not set".
type Settings struct {
	ServiceAddress  netip.Prefix  // lan1.service-address
	ServiceAddress6 netip.Prefix  // lan1.service-address6
	Interval        time.Duration // heartbeat.interval
	Missed          int           // heartbeat.missed
	FailoverTime    time.Duration // heartbeat.failover-time
	ConnectionWait  time.Duration // heartbeat.connection-wait-time
	LAN1Interval    time.Duration // heartbeat.lan1-interval
	Recovery        string        // recovery
	OnLineLoss      string        // on-line-loss
	DatastoreMode   string        // datastore.mode
	ScanInterval    time.Duration // datastore.interval
	Replication     string        // datastore.replication
}

// setting is one row of the table every view of Settings is built from:
// the encoding, the decoding and Compare.
type setting struct {
	key string
	get func(*Settings) string
	set func(*Settings, string) error
}

func durationSetting(key string, f func(*Settings) *time.Duration) setting {
	return setting{key,
		func(s *Settings) string { return f(s).String() },
		func(s *Settings, v string) error {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				return fmt.Errorf("bad duration %q", v)
			}
			*f(s) = d
			return nil
		}}
}

func stringSetting(key string, f func(*Settings) *string) setting {
	return setting{key,
		func(s *Settings) string { return *f(s) },
		func(s *Settings, v string) error { *f(s) = v; return nil }}
}

func prefixSetting(key string, f func(*Settings) *netip.Prefix) setting {
	return setting{key,
		func(s *Settings) string {
			if !f(s).IsValid() {
				return ""
			}
			return f(s).String()
		},
		func(s *Settings, v string) error {
			if v == "" {
				*f(s) = netip.Prefix{}
				return nil
			}
			p, err := netip.ParsePrefix(v)
			if err != nil {
				return fmt.Errorf("bad prefix %q", v)
			}
			*f(s) = p
			return nil
		}}
}

// settingsTable lists the pair-level settings in the order Compare checks
// them and the wire carries them.
var settingsTable = []setting{
	prefixSetting("lan1.service-address", func(s *Settings) *netip.Prefix { return &s.ServiceAddress }),
	prefixSetting("lan1.service-address6", func(s *Settings) *netip.Prefix { return &s.ServiceAddress6 }),
	durationSetting("heartbeat.interval", func(s *Settings) *time.Duration { return &s.Interval }),
	{"heartbeat.missed",
		func(s *Settings) string { return strconv.Itoa(s.Missed) },
		func(s *Settings, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return fmt.Errorf("bad count %q", v)
			}
			s.Missed = n
			return nil
		}},
	durationSetting("heartbeat.failover-time", func(s *Settings) *time.Duration { return &s.FailoverTime }),
	durationSetting("heartbeat.connection-wait-time", func(s *Settings) *time.Duration { return &s.ConnectionWait }),
	durationSetting("heartbeat.lan1-interval", func(s *Settings) *time.Duration { return &s.LAN1Interval }),
	stringSetting("recovery", func(s *Settings) *string { return &s.Recovery }),
	stringSetting("on-line-loss", func(s *Settings) *string { return &s.OnLineLoss }),
	stringSetting("datastore.mode", func(s *Settings) *string { return &s.DatastoreMode }),
	durationSetting("datastore.interval", func(s *Settings) *time.Duration { return &s.ScanInterval }),
	stringSetting("datastore.replication", func(s *Settings) *string { return &s.Replication }),
}

// SettingKeys returns the config keys of the pair-level settings, in order.
func SettingKeys() []string {
	keys := make([]string, len(settingsTable))
	for i, r := range settingsTable {
		keys[i] = r.key
	}
	return keys
}

// Compare returns the config key of the first pair-level setting in which
// a and b differ, or "" when they agree: the key the `settings-mismatch`
// alarm names.
func Compare(a, b Settings) string {
	for _, r := range settingsTable {
		if r.get(&a) != r.get(&b) {
			return r.key
		}
	}
	return ""
}

// maxSettingsLen bounds the encoded settings.
const maxSettingsLen = 512

// ErrSettings: encoded settings are malformed or name an unknown key.
var ErrSettings = errors.New("pairing: bad settings")

// MarshalBinary encodes the settings as the prefix-free concatenation of
// key, value, key, value… in the table's order, values in their config text
// form ("100ms", "192.168.1.10/24").
func (s Settings) MarshalBinary() ([]byte, error) {
	parts := make([][]byte, 0, 2*len(settingsTable))
	for _, r := range settingsTable {
		parts = append(parts, []byte(r.key), []byte(r.get(&s)))
	}
	b := cpace.PrefixFreeCat(parts...)
	if len(b) > maxSettingsLen {
		return nil, fmt.Errorf("%w: %d bytes encoded, at most %d", ErrSettings, len(b), maxSettingsLen)
	}
	return b, nil
}

// UnmarshalBinary decodes settings. Every key must be known and appear
// once; a key the table lacks (a newer main) is an error naming it, so an
// older spare never silently drops a setting it cannot adopt. Keys it does
// not carry stay zero.
func (s *Settings) UnmarshalBinary(b []byte) error {
	if len(b) > maxSettingsLen {
		return fmt.Errorf("%w: %d bytes", ErrSettings, len(b))
	}
	var out Settings
	seen := make(map[string]bool, len(settingsTable))
	for len(b) > 0 {
		kv, rest, err := splitPair(b)
		if err != nil {
			return err
		}
		b = rest
		key, val := string(kv[0]), string(kv[1])
		r := lookupSetting(key)
		if r == nil {
			return fmt.Errorf("%w: unknown key %q", ErrSettings, key)
		}
		if seen[key] {
			return fmt.Errorf("%w: %s twice", ErrSettings, key)
		}
		seen[key] = true
		if err := r.set(&out, val); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrSettings, key, err)
		}
	}
	*s = out
	return nil
}

func lookupSetting(key string) *setting {
	for i := range settingsTable {
		if settingsTable[i].key == key {
			return &settingsTable[i]
		}
	}
	return nil
}

// splitPair reads two length-prefixed fields off the front of b.
func splitPair(b []byte) (kv [2][]byte, rest []byte, err error) {
	for i := range kv {
		n, used, ok := readLEB(b)
		if !ok || n > len(b)-used {
			return kv, nil, fmt.Errorf("%w: truncated", ErrSettings)
		}
		kv[i], b = b[used:used+n], b[used+n:]
	}
	return kv, b, nil
}

// readLEB reads a LEB128 length of at most two bytes.
func readLEB(b []byte) (n, used int, ok bool) {
	for i := 0; i < 2 && i < len(b); i++ {
		n |= int(b[i]&0x7f) << (7 * i)
		if b[i]&0x80 == 0 {
			return n, i + 1, true
		}
	}
	return 0, 0, false
}
