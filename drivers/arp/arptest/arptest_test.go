package arptest

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/pairguard/pairguard/drivers/arp"
)

func TestClient(t *testing.T) {
	ctx := context.Background()
	hw := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	other := net.HardwareAddr{2, 0, 0, 0, 0, 2}
	svc := netip.MustParseAddr("192.0.2.10")
	gw := netip.MustParseAddr("192.0.2.1")
	c := New(hw)

	if inUse, holder, err := c.Probe(ctx, svc, 3, 200*time.Millisecond); err != nil || inUse || holder != nil {
		t.Fatalf("default Probe = %t, %v, %v; want free", inUse, holder, err)
	}
	c.SetProbe(svc, other, nil)
	if inUse, holder, err := c.Probe(ctx, svc, 3, 200*time.Millisecond); err != nil || !inUse || holder.String() != other.String() {
		t.Fatalf("Probe after SetProbe = %t, %v, %v; want in use by %v", inUse, holder, err, other)
	}
	if _, err := c.Resolve(ctx, gw); !errors.Is(err, arp.ErrNoReply) {
		t.Fatalf("default Resolve error = %v, want ErrNoReply", err)
	}
	c.SetResolve(gw, other, nil)
	if mac, err := c.Resolve(ctx, gw); err != nil || mac.String() != other.String() {
		t.Fatalf("Resolve = %v, %v", mac, err)
	}
	boom := errors.New("boom")
	c.SetAnnounceErr(boom)
	if err := c.Announce(svc, hw); !errors.Is(err, boom) {
		t.Fatalf("Announce error = %v, want boom", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := c.Probe(cancelled, svc, 1, time.Second); !errors.Is(err, context.Canceled) {
		t.Errorf("Probe with a cancelled context: %v", err)
	}

	var got []string
	for _, call := range c.Calls() {
		got = append(got, call.String())
	}
	want := []string{
		"Probe(192.0.2.10, 3, 200ms)", "Probe(192.0.2.10, 3, 200ms)",
		"Resolve(192.0.2.1)", "Resolve(192.0.2.1)",
		"Announce(192.0.2.10, 02:00:00:00:00:01)",
		"Probe(192.0.2.10, 1, 1s)",
	}
	if !slices.Equal(got, want) {
		t.Errorf("Calls() =\n%q\nwant\n%q", got, want)
	}
	if n := len(c.Announcements()); n != 1 {
		t.Errorf("Announcements() has %d calls, want 1", n)
	}
	if c.HardwareAddr().String() != hw.String() {
		t.Errorf("HardwareAddr() = %v", c.HardwareAddr())
	}
}
