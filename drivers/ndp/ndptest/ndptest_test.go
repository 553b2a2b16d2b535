package ndptest

import (
	"errors"
	"net/netip"
	"testing"
)

func TestAnnouncer(t *testing.T) {
	var a Announcer
	ip := netip.MustParseAddr("2001:db8::10")
	if err := a.Announce(ip, nil); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	a.SetErr(boom)
	if err := a.Announce(ip, nil); !errors.Is(err, boom) {
		t.Fatalf("Announce after SetErr = %v", err)
	}
	got := a.Announcements()
	if len(got) != 2 || got[0].IP != ip || got[0].Err != nil || !errors.Is(got[1].Err, boom) {
		t.Errorf("Announcements() = %+v", got)
	}
}
