package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pairguard/pairguard/drivers/addr/addrtest"
	"github.com/pairguard/pairguard/drivers/arp/arptest"
	"github.com/pairguard/pairguard/drivers/button/buttontest"
	"github.com/pairguard/pairguard/drivers/led/ledtest"
	"github.com/pairguard/pairguard/drivers/rawether"
	"github.com/pairguard/pairguard/drivers/rawether/rawethertest"
	"github.com/pairguard/pairguard/drivers/watchdog/watchdogtest"
	"github.com/pairguard/pairguard/firmware/config"
	"github.com/pairguard/pairguard/firmware/control"
	"github.com/pairguard/pairguard/firmware/engine"
	"github.com/pairguard/pairguard/firmware/frame"
	"github.com/pairguard/pairguard/firmware/panel"
)

// The daemon over in-memory links: two daemons on a fake LAN 2 and LAN 1,
// fake netlink and ARP, and an attacker port on LAN 2.

type node struct {
	d      *Daemon
	addrs  *addrtest.Manager
	arp    *arptest.Client
	btn    *buttontest.Button
	wd     *watchdogtest.Watchdog
	led    *ledtest.LED
	cancel context.CancelFunc
	done   chan error
}

func mac(i byte) net.HardwareAddr { return net.HardwareAddr{2, 0, 0, 0, 0, i} }

func testConfig(t *testing.T, mode string, dir string, extra ...string) *config.Config {
	t.Helper()
	// Extra text that starts with a table goes at the end, top-level keys
	// first; a [heartbeat] table replaces the default one.
	var top, tables string
	heartbeat := "[heartbeat]\ninterval = \"20ms\"\nconnection-wait-time = \"300ms\"\n"
	for _, e := range extra {
		if strings.HasPrefix(e, "[heartbeat]") {
			heartbeat = e + "\n"
		} else if strings.HasPrefix(e, "[") {
			tables += e + "\n"
		} else {
			top += e + "\n"
		}
	}
	src := top + fmt.Sprintf(`mode = %q
state-dir = %q
pair-key = "daemon-test-pair-key-0001"
[lan1]
interface = "l1"
service-address = "192.168.5.10/24"
[lan2]
interface = "l2"
%s[hooks]
dir = %q
timeout = "5s"
%s`, mode, dir, heartbeat, filepath.Join(dir, "hooks"), tables)
	c, err := config.Parse(mode+".toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func startNode(t *testing.T, mode string, lan2, lan1 *rawethertest.Hub, id byte) *node {
	t.Helper()
	return startNodeWith(t, mode, lan2, lan1, id, t.TempDir(), "", nil)
}

// startNodeWith starts a node with extra config text in dir; prep, when
// set, adjusts the daemon before it runs.
func startNodeWith(t *testing.T, mode string, lan2, lan1 *rawethertest.Hub, id byte, dir, extra string, prep func(*Daemon)) *node {
	t.Helper()
	return startNodeConfig(t, testConfig(t, mode, dir, extra), lan2, lan1, id, prep)
}

// startNodeConfig starts a node with cfg.
func startNodeConfig(t *testing.T, cfg *config.Config, lan2, lan1 *rawethertest.Hub, id byte, prep func(*Daemon)) *node {
	t.Helper()
	mode := cfg.Mode
	n := &node{
		addrs: addrtest.New(),
		arp:   arptest.New(mac(id)),
		btn:   buttontest.New(),
		wd:    watchdogtest.New(3 * time.Second),
		led:   ledtest.New("failover"),
		done:  make(chan error, 1),
	}
	deps := Deps{
		LAN2: lan2.Port(mode+"-l2", mac(id)),
		LAN1: lan1.Port(mode+"-l1", mac(id)),
		Addr: n.addrs,
		ARP:  n.arp,
		Links: []LinkWatch{{Path: engine.PathLAN2, Watch: func(ctx context.Context) (<-chan rawether.LinkEvent, error) {
			return lan2.WatchLink(ctx, mode+"-l2")
		}}},
		Panel: &Panel{
			LEDs:     panel.Outputs{panel.ChannelFailover: n.led},
			Button:   n.btn,
			Watchdog: n.wd,
			WDEvery:  50 * time.Millisecond,
			Now:      func() time.Duration { return time.Duration(time.Now().UnixNano()) },
		},
	}
	d, err := New(cfg, deps, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	n.d = d
	if prep != nil {
		prep(d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	go func() { n.done <- d.Run(ctx) }()
	t.Cleanup(func() { n.stop(t) })
	return n
}

func (n *node) stop(t *testing.T) {
	if n.cancel == nil {
		return
	}
	n.cancel()
	n.cancel = nil
	select {
	case <-n.done:
	case <-time.After(10 * time.Second):
		t.Error("daemon did not stop")
	}
}

func (n *node) report(t *testing.T) Report {
	t.Helper()
	resp := n.d.Handle(context.Background(), control.Request{Cmd: "status"}, nil)
	var r Report
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		t.Fatalf("status: %v (%+v)", err, resp)
	}
	return r
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestDaemonPairAndHostileFrames(t *testing.T) {
	lan2, lan1 := rawethertest.NewHub(), rawethertest.NewHub()
	m := startNode(t, "main", lan2, lan1, 1)
	s := startNode(t, "spare", lan2, lan1, 2)
	waitFor(t, "main primary", func() bool { return m.report(t).Role == "primary" })
	waitFor(t, "spare secondary", func() bool { return s.report(t).Role == "secondary" })
	if got := m.addrs.Addresses(); len(got) != 1 || got[0] != netip.MustParsePrefix("192.168.5.10/24") {
		t.Fatalf("main addresses %v", got)
	}
	// The gratuitous ARP burst runs beside the loop, after the claim.
	waitFor(t, "main's gratuitous ARP after its claim", func() bool { return len(m.arp.Announcements()) > 0 })

	// An attacker on the failover line records a genuine frame and replays
	// it, forges one with another key, and sends garbage.
	evil := lan2.Port("evil", mac(9))
	buf := make([]byte, 1600)
	evil.SetReadDeadline(time.Now().Add(2 * time.Second))
	var genuine []byte
	for genuine == nil {
		n, src, err := evil.Recv(buf)
		if err != nil {
			t.Fatal(err)
		}
		if src.String() == mac(1).String() {
			genuine = append([]byte(nil), buf[:n]...)
		}
	}
	before := s.report(t).Frames
	evil.Send(rawether.Broadcast, genuine)
	forged := frame.Frame{Type: frame.TypeHeartbeat, NodeID: 77, Role: 2, Epoch: 99, BootID: 1, Seq: 1, PairID: frame.NewKey([]byte("another-pair-key-00000")).PairID()}
	fb, _ := forged.AppendBinary(nil, frame.NewKey([]byte("another-pair-key-00000")))
	evil.Send(rawether.Broadcast, fb)
	bad := append([]byte(nil), genuine...)
	bad[len(bad)-1] ^= 1
	evil.Send(rawether.Broadcast, bad)
	evil.Send(rawether.Broadcast, []byte("PG\x01"))
	waitFor(t, "hostile frames counted", func() bool {
		f := s.report(t).Frames
		return f.Replayed > before.Replayed && f.Forged > before.Forged && f.Foreign > before.Foreign && f.Short > before.Short
	})
	r := s.report(t)
	if r.Role != "secondary" || r.Epoch != 1 {
		t.Fatalf("hostile frames changed the spare: %s epoch %d", r.Role, r.Epoch)
	}

	// Power loss of the main: the spare takes over and lights the failover LED.
	lan2.Cut("main-l2")
	lan1.Cut("main-l1")
	m.stop(t)
	waitFor(t, "spare primary", func() bool { return s.report(t).Role == "primary" })
	r = s.report(t)
	if r.Epoch != 2 || !r.Failover || len(s.addrs.Addresses()) != 1 {
		t.Errorf("spare after takeover: %+v addrs %v", r, s.addrs.Addresses())
	}
	waitFor(t, "failover LED lit", func() bool { return s.led.On() })
	// A short press acknowledges.
	now := time.Duration(time.Now().UnixNano())
	s.btn.Click(now, 200*time.Millisecond)
	waitFor(t, "failover LED off", func() bool { return !s.led.On() && !s.report(t).Failover })
	if s.wd.Feeds() == 0 || s.wd.Fired() {
		t.Errorf("watchdog feeds %d fired %v", s.wd.Feeds(), s.wd.Fired())
	}
}

func TestDaemonFencesWhenReleaseFails(t *testing.T) {
	lan2, lan1 := rawethertest.NewHub(), rawethertest.NewHub()
	m := startNode(t, "main", lan2, lan1, 1)
	waitFor(t, "main primary alone", func() bool { return m.report(t).Role == "primary" })
	m.addrs.SetErr(addrtest.OpRemove, errors.New("netlink: device busy"))
	resp := m.d.Handle(context.Background(), control.Request{Cmd: "swap"}, nil)
	if resp.OK {
		t.Fatalf("swap without a peer accepted: %+v", resp)
	}
	// Stopping demotes the lone primary; the release fails, so the daemon
	// must leave the watchdog armed to reboot (fence) the board.
	m.stop(t)
	if m.wd.Closed() {
		t.Error("watchdog disarmed although the address could not be released")
	}
}

func TestDaemonStaleAddressRemoved(t *testing.T) {
	lan2, lan1 := rawethertest.NewHub(), rawethertest.NewHub()
	dir := t.TempDir()
	cfg := testConfig(t, "spare", dir)
	addrs := addrtest.New(netip.MustParsePrefix("192.168.5.10/24"))
	d, err := New(cfg, Deps{LAN2: lan2.Port("l2", mac(1)), LAN1: lan1.Port("l1", mac(1)), Addr: addrs, ARP: arptest.New(mac(1))}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	waitFor(t, "stale address removed", func() bool { return len(addrs.Addresses()) == 0 })
	cancel()
	<-done
}
