//go:build linux

package addr

import (
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/pairguard/pairguard/drivers/internal/nstest"
)

func TestNetlinkAddRemoveHas(t *testing.T) {
	nstest.Require(t, "drivers/addr")
	nstest.NewNetns(t, "pgl-addr")
	nstest.Run(t, "ip", "-n", "pgl-addr", "link", "add", "pgd0", "type", "veth", "peer", "name", "pgd1")
	nstest.Run(t, "ip", "-n", "pgl-addr", "link", "set", "pgd0", "up")

	nstest.InNetns(t, "pgl-addr", func() {
		m, err := Open("pgd0")
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		if err := m.Delete(); err == nil {
			t.Error("Delete on a Manager from Open succeeded; want an error")
		}
		for _, s := range []string{"192.0.2.10/24", "2001:db8::10/64"} {
			p := netip.MustParsePrefix(s)
			has, err := m.Has(p)
			if err != nil || has {
				t.Fatalf("Has(%s) before Add = %t, %v; want false, nil", p, has, err)
			}
			for i := range 2 {
				if err := m.Add(p); err != nil {
					t.Fatalf("Add(%s) #%d: %v", p, i+1, err)
				}
			}
			if has, err := m.Has(p); err != nil || !has {
				t.Fatalf("Has(%s) after Add = %t, %v; want true, nil", p, has, err)
			}
			other := netip.PrefixFrom(p.Addr(), p.Bits()-8)
			if has, err := m.Has(other); err != nil || has {
				t.Errorf("Has(%s) with only %s present = %t, %v; want false, nil", other, p, has, err)
			}
			out := nstest.Run(t, "ip", "-n", "pgl-addr", "addr", "show", "dev", "pgd0")
			if !strings.Contains(out, " "+s+" ") {
				t.Errorf("ip addr show lacks %s:\n%s", s, out)
			}
			if p.Addr().Is4() && !strings.Contains(out, "brd 192.0.2.255") {
				t.Errorf("ip addr show lacks the broadcast address:\n%s", out)
			}
			if p.Addr().Is6() && strings.Contains(out, "tentative") {
				t.Errorf("IPv6 address is tentative (NODAD not set):\n%s", out)
			}
			for i := range 2 {
				if err := m.Remove(p); err != nil {
					t.Fatalf("Remove(%s) #%d: %v", p, i+1, err)
				}
			}
			if has, err := m.Has(p); err != nil || has {
				t.Fatalf("Has(%s) after Remove = %t, %v; want false, nil", p, has, err)
			}
			if out := nstest.Run(t, "ip", "-n", "pgl-addr", "addr", "show", "dev", "pgd0"); strings.Contains(out, s) {
				t.Errorf("ip addr show still has %s:\n%s", s, out)
			}
		}
		if err := m.Add(netip.Prefix{}); err == nil {
			t.Error("Add(invalid prefix) succeeded")
		}
	})

	// A restarted daemon finds the address left by a previous run.
	nstest.Run(t, "ip", "-n", "pgl-addr", "addr", "add", "192.0.2.20/24", "dev", "pgd0")
	nstest.InNetns(t, "pgl-addr", func() {
		m, err := Open("pgd0")
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		p := netip.MustParsePrefix("192.0.2.20/24")
		if has, err := m.Has(p); err != nil || !has {
			t.Fatalf("Has(%s) for an address added by ip = %t, %v; want true, nil", p, has, err)
		}
		if err := m.Remove(p); err != nil {
			t.Fatal(err)
		}
	})

	nstest.InNetns(t, "pgl-addr", func() {
		if _, err := Open("pgnope0"); err == nil {
			t.Error("Open of a missing interface succeeded")
		}
	})
}

func TestMacvlan(t *testing.T) {
	nstest.Require(t, "drivers/addr")
	nstest.NewNetns(t, "pgl-addr-a")
	nstest.NewNetns(t, "pgl-addr-b")
	nstest.Run(t, "ip", "-n", "pgl-addr-a", "link", "add", "pgv0", "type", "veth", "peer", "name", "pgv1", "netns", "pgl-addr-b")
	nstest.Run(t, "ip", "-n", "pgl-addr-a", "addr", "add", "192.0.2.1/24", "dev", "pgv0")
	nstest.Run(t, "ip", "-n", "pgl-addr-b", "addr", "add", "192.0.2.2/24", "dev", "pgv1")
	nstest.Run(t, "ip", "-n", "pgl-addr-a", "link", "set", "pgv0", "up")
	nstest.Run(t, "ip", "-n", "pgl-addr-b", "link", "set", "pgv1", "up")
	vmac := VirtualMAC(0x11223344)
	service := netip.MustParsePrefix("192.0.2.10/24")

	var m *Netlink
	nstest.InNetns(t, "pgl-addr-a", func() {
		var err error
		if m, err = OpenMacvlan("pgv0", "pgmv0", vmac); err != nil {
			t.Fatal(err)
		}
		if err := m.Add(service); err != nil {
			t.Fatal(err)
		}
	})
	defer m.Close()
	sysctls := nstest.Run(t, "ip", "netns", "exec", "pgl-addr-a", "sh", "-c", "grep . /proc/sys/net/ipv4/conf/pg*/arp_*")
	for _, want := range []string{"pgv0/arp_ignore:1", "pgmv0/arp_ignore:1", "pgv0/arp_announce:2", "pgmv0/arp_announce:2"} {
		if !strings.Contains(sysctls, want) {
			t.Errorf("sysctl %s not set:\n%s", want, sysctls)
		}
	}
	out := nstest.Run(t, "ip", "-n", "pgl-addr-a", "-d", "link", "show", "pgmv0")
	for _, want := range []string{vmac.String(), "macvlan mode private", "state UP", "pgmv0@pgv0"} {
		if !strings.Contains(out, want) {
			t.Errorf("ip -d link show pgmv0 lacks %q:\n%s", want, out)
		}
	}
	// The other side resolves the service address to the virtual MAC and the
	// management address to the parent's own MAC.
	neigh := resolveFrom(t, "pgl-addr-b", "pgv1", "192.0.2.10", "192.0.2.1")
	if !strings.Contains(neigh, "192.0.2.10 lladdr "+vmac.String()) {
		t.Errorf("pgl-addr-b does not resolve 192.0.2.10 to %v:\n%s", vmac, neigh)
	}
	if strings.Contains(neigh, "192.0.2.1 lladdr "+vmac.String()) {
		t.Errorf("pgl-addr-b resolves the management address to the virtual MAC:\n%s", neigh)
	}

	nstest.InNetns(t, "pgl-addr-a", func() {
		if err := m.Remove(service); err != nil {
			t.Fatal(err)
		}
		if has, err := m.Has(service); err != nil || has {
			t.Errorf("Has after Remove = %t, %v", has, err)
		}
	})
	if out := nstest.Run(t, "ip", "-n", "pgl-addr-a", "link", "show", "pgmv0"); strings.Contains(out, "state UP") || strings.Contains(out, ",UP") {
		t.Errorf("pgmv0 still up after Remove:\n%s", out)
	}

	// A restart adopts the existing link, fixing its MAC; a name taken by
	// another kind of link is refused.
	nstest.Run(t, "ip", "-n", "pgl-addr-a", "link", "set", "pgmv0", "address", "02:50:00:00:00:99")
	nstest.InNetns(t, "pgl-addr-a", func() {
		m2, err := OpenMacvlan("pgv0", "pgmv0", vmac)
		if err != nil {
			t.Fatal(err)
		}
		defer m2.Close()
		if _, err := OpenMacvlan("pgv0", "lo", vmac); err == nil {
			t.Error("OpenMacvlan adopted lo")
		}
		if _, err := OpenMacvlan("pgv0", "pgmv1", []byte{1, 2, 3, 4, 5, 6}); err == nil {
			t.Error("OpenMacvlan accepted a multicast MAC")
		}
		if err := m2.Delete(); err != nil {
			t.Fatal(err)
		}
		if err := m2.Delete(); err != nil {
			t.Errorf("second Delete: %v", err)
		}
	})
	if out, err := exec.Command("ip", "-n", "pgl-addr-a", "link", "show", "pgmv0").CombinedOutput(); err == nil {
		t.Errorf("pgmv0 still exists after Delete:\n%s", out)
	}
}

// resolveFrom makes the namespace ns resolve the addresses (by sending a UDP
// datagram to each: the image has no ping) and returns its neighbour table
// for dev once every address has a MAC, or after 3 s.
func resolveFrom(t *testing.T, ns, dev string, addrs ...string) string {
	t.Helper()
	nstest.InNetns(t, ns, func() {
		for _, a := range addrs {
			c, err := net.Dial("udp4", net.JoinHostPort(a, "9"))
			if err != nil {
				t.Fatal(err)
			}
			_, _ = c.Write([]byte("pairguard"))
			c.Close()
		}
	})
	var out string
	for range 30 {
		out = nstest.Run(t, "ip", "-n", ns, "neigh", "show", "dev", dev)
		done := true
		for _, a := range addrs {
			if !strings.Contains(out, a+" lladdr ") {
				done = false
			}
		}
		if done {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return out
}
