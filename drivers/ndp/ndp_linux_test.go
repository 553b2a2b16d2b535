//go:build linux

package ndp

import (
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pairguard/pairguard/drivers/internal/nstest"
)

func TestAnnounceNetns(t *testing.T) {
	nstest.Require(t, "drivers/ndp")
	if _, err := os.Stat("/proc/sys/net/ipv6"); err != nil {
		t.Skip("skipping: IPv6 is disabled in this kernel")
	}
	nstest.NewNetns(t, "pgl-ndp-a")
	nstest.NewNetns(t, "pgl-ndp-b")
	nstest.Run(t, "ip", "-n", "pgl-ndp-a", "link", "add", "pgna0", "type", "veth", "peer", "name", "pgnb0", "netns", "pgl-ndp-b")
	nstest.Run(t, "ip", "-n", "pgl-ndp-a", "addr", "add", "2001:db8::10/64", "dev", "pgna0", "nodad")
	nstest.Run(t, "ip", "-n", "pgl-ndp-b", "addr", "add", "2001:db8::2/64", "dev", "pgnb0", "nodad")
	nstest.Run(t, "ip", "-n", "pgl-ndp-a", "link", "set", "pgna0", "up")
	nstest.Run(t, "ip", "-n", "pgl-ndp-b", "link", "set", "pgnb0", "up")
	nstest.WaitUp(t, "pgl-ndp-a", "pgna0")
	nstest.WaitUp(t, "pgl-ndp-b", "pgnb0")

	svc := netip.MustParseAddr("2001:db8::10")
	vmac := net.HardwareAddr{0x02, 0x50, 0x11, 0x22, 0x33, 0x44}
	var c *Conn
	nstest.InNetns(t, "pgl-ndp-a", func() {
		var err error
		if c, err = Open("pgna0"); err != nil {
			t.Fatal(err)
		}
	})
	defer c.Close()

	for _, mac := range []net.HardwareAddr{vmac, nil} {
		want := mac
		if want == nil {
			want = c.HardwareAddr()
		}
		// The neighbour must exist to be updated: an old holder's MAC.
		nstest.Run(t, "ip", "-n", "pgl-ndp-b", "neigh", "replace", svc.String(), "lladdr", "02:00:00:00:00:99", "dev", "pgnb0", "nud", "stale")
		start := time.Now()
		nstest.InNetns(t, "pgl-ndp-a", func() {
			if err := c.Announce(svc, mac); err != nil {
				t.Fatal(err)
			}
		})
		var out string
		updated := false
		for range 20 {
			out = nstest.Run(t, "ip", "-n", "pgl-ndp-b", "neigh", "show", svc.String(), "dev", "pgnb0")
			if strings.Contains(out, want.String()) {
				updated = true
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if !updated {
			t.Errorf("pgl-ndp-b's entry for %s was not updated to %v:\n%s", svc, want, out)
		} else {
			t.Logf("neighbour updated to %v within %v", want, time.Since(start))
		}
	}
	nstest.InNetns(t, "pgl-ndp-a", func() {
		if err := c.Announce(netip.MustParseAddr("fe80::1"), nil); err == nil {
			t.Error("Announce of a link-local address succeeded")
		}
	})
}
