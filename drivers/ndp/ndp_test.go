package ndp

import (
	"net"
	"net/netip"
	"testing"

	mndp "github.com/mdlayher/ndp"
)

func TestAdvertisement(t *testing.T) {
	ip := netip.MustParseAddr("2001:db8::10")
	mac := net.HardwareAddr{0x02, 0x50, 0x11, 0x22, 0x33, 0x44}
	b, err := mndp.MarshalMessage(advertisement(ip, mac))
	if err != nil {
		t.Fatal(err)
	}
	m, err := mndp.ParseMessage(b)
	if err != nil {
		t.Fatal(err)
	}
	na, ok := m.(*mndp.NeighborAdvertisement)
	if !ok {
		t.Fatalf("parsed %T, want a neighbour advertisement", m)
	}
	if !na.Override || na.Solicited || na.Router || na.TargetAddress != ip || len(na.Options) != 1 {
		t.Fatalf("advertisement = %+v; want Override, not Solicited, target %s, one option", na, ip)
	}
	lla, ok := na.Options[0].(*mndp.LinkLayerAddress)
	if !ok || lla.Direction != mndp.Target || lla.Addr.String() != mac.String() {
		t.Errorf("option = %+v; want target link-layer address %v", na.Options[0], mac)
	}
}

func TestUsable(t *testing.T) {
	for s, want := range map[string]bool{
		"2001:db8::10":     true,
		"fd00::1":          true,
		"fe80::1":          false,
		"ff02::1":          false,
		"::":               false,
		"::1":              false,
		"192.0.2.10":       false,
		"::ffff:192.0.2.1": false,
	} {
		if got := usable(netip.MustParseAddr(s)); got != want {
			t.Errorf("usable(%s) = %t, want %t", s, got, want)
		}
	}
}
