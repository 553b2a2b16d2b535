package pairing

import (
	"errors"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/pairguard/pairguard/firmware/pairing/cpace"
)

func TestSettingsRoundTrip(t *testing.T) {
	for _, s := range []Settings{testSettings(), {}, {ServiceAddress6: netip.MustParsePrefix("2001:db8::10/64"), Missed: 1}} {
		b, err := s.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var got Settings
		if err := got.UnmarshalBinary(b); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, s) || Compare(got, s) != "" {
			t.Errorf("round trip: got %+v, want %+v", got, s)
		}
	}
}

// TestCompareNamesEachKey changes one setting at a time and expects
// Compare to name exactly that key; with two changed, the first in table
// order.
func TestCompareNamesEachKey(t *testing.T) {
	base := testSettings()
	other := map[string]string{
		"lan1.service-address": "192.168.1.11/24", "lan1.service-address6": "2001:db8::1/64",
		"heartbeat.missed": "7", "recovery": "automatic", "on-line-loss": "takeover",
		"datastore.mode": "periodic", "datastore.replication": "async",
	}
	keys := SettingKeys()
	if len(keys) != len(settingsTable) || keys[0] != "lan1.service-address" {
		t.Fatalf("keys %v", keys)
	}
	for _, r := range settingsTable {
		s := base
		v, ok := other[r.key]
		if !ok {
			v = "1h2m3s" // every other key is a duration
		}
		if err := r.set(&s, v); err != nil {
			t.Fatalf("%s = %q: %v", r.key, v, err)
		}
		if got := Compare(base, s); got != r.key {
			t.Errorf("changing %s: Compare names %q", r.key, got)
		}
	}
	s := base
	s.Replication, s.Interval = "async", time.Second
	if got := Compare(base, s); got != "heartbeat.interval" {
		t.Errorf("two changes: %q, want the first, heartbeat.interval", got)
	}
	// "100ms" and "0.1s" are the same setting.
	a, b := base, base
	b.Interval = 100 * time.Millisecond
	if Compare(a, b) != "" {
		t.Error("equal durations differ")
	}
}

func TestSettingsErrors(t *testing.T) {
	for name, b := range map[string][]byte{
		"unknown key": cpace.PrefixFreeCat([]byte("heartbeat.jitter"), []byte("1s")),
		"twice":       cpace.PrefixFreeCat([]byte("recovery"), []byte("manual"), []byte("recovery"), []byte("manual")),
		"bad value":   cpace.PrefixFreeCat([]byte("heartbeat.interval"), []byte("soon")),
		"bad prefix":  cpace.PrefixFreeCat([]byte("lan1.service-address"), []byte("192.168.1.300/24")),
		"truncated":   cpace.PrefixFreeCat([]byte("recovery"), []byte("manual"))[:10],
		"odd":         cpace.PrefixFreeCat([]byte("recovery")),
	} {
		var s Settings
		if err := s.UnmarshalBinary(b); !errors.Is(err, ErrSettings) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestDiffers(t *testing.T) {
	a := Settings{Recovery: "manual", Interval: 100 * time.Millisecond}
	b := a
	b.Interval = 200 * time.Millisecond
	if Differs(a, b, "recovery") || !Differs(a, b, "heartbeat.interval") || Differs(a, b, "no-such-key") {
		t.Fatal("Differs looks at other keys than the one named")
	}
}

// Diff names every key that differs, in table order; Value shows each in
// its config form.
func TestDiffAndValue(t *testing.T) {
	a := testSettings()
	if d := Diff(a, a); d != nil {
		t.Fatalf("Diff of equal settings: %v", d)
	}
	b := a
	b.Interval, b.Recovery = a.Interval+time.Millisecond, "other"
	if d := Diff(a, b); !reflect.DeepEqual(d, []string{"heartbeat.interval", "recovery"}) {
		t.Fatalf("Diff = %v", d)
	}
	if v := b.Value("heartbeat.interval"); v != (a.Interval + time.Millisecond).String() {
		t.Fatalf("Value = %q", v)
	}
	if v := b.Value("no.such-key"); v != "" {
		t.Fatalf("Value of an unknown key = %q", v)
	}
}
