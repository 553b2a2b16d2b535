package pair

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"

	"github.com/pairguard/pairguard/firmware/frame"
	"github.com/pairguard/pairguard/firmware/frame/framepcap"
	"github.com/pairguard/pairguard/test/netns"
)

// The attacker of issue 12: a host on LAN 1 without the pair key that
// records failover-line frames and sends them again, unchanged.

// hostSocket opens a raw socket for EtherType 0x88B5 on ifname inside
// network namespace ns. It uses mdlayher/packet directly, so that these
// tests do not depend on the driver they exercise.
func hostSocket(t *testing.T, ns, ifname string) *packet.Conn {
	t.Helper()
	type result struct {
		c   *packet.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// The thread enters the namespace and is never unlocked: it ends
		// with the goroutine. The socket keeps the namespace it was made in.
		runtime.LockOSThread()
		f, err := os.Open("/var/run/netns/" + ns)
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{err: err}
			return
		}
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			ch <- result{err: err}
			return
		}
		c, err := packet.Listen(ifi, packet.Datagram, int(frame.EtherType), nil)
		ch <- result{c, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("raw socket in %s on %s: %v", ns, ifname, r.err)
	}
	t.Cleanup(func() { r.c.Close() })
	return r.c
}

// recorder keeps every failover-line frame a host socket hears.
type recorder struct {
	mu     sync.Mutex
	frames []heard
	done   chan struct{}
}

type heard struct {
	src     net.HardwareAddr
	payload []byte
}

func record(c *packet.Conn) *recorder {
	r := &recorder{done: make(chan struct{})}
	go func() {
		defer close(r.done)
		buf := make([]byte, 2048)
		for {
			n, addr, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			r.mu.Lock()
			r.frames = append(r.frames, heard{bytes.Clone(addr.(*packet.Addr).HardwareAddr), bytes.Clone(buf[:n])})
			r.mu.Unlock()
		}
	}()
	return r
}

// from returns the payloads recorded from mac whose type is typ (0: any).
func (r *recorder) from(mac net.HardwareAddr, typ frame.Type) [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out [][]byte
	for _, f := range r.frames {
		if len(f.payload) < 4 || !bytes.Equal(f.src, mac) {
			continue
		}
		if typ == 0 || frame.Type(f.payload[3]) == typ {
			out = append(out, f.payload)
		}
	}
	return out
}

// writePcap keeps the recording with the test's files, as `pairguard
// capture` would write it.
func writePcap(t *testing.T, src net.HardwareAddr, payloads [][]byte) string {
	t.Helper()
	var recs []framepcap.Record
	for _, f := range payloads {
		recs = append(recs, framepcap.Record{Time: time.Now(), Dst: net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, Src: src, Payload: f})
	}
	path := filepath.Join(t.TempDir(), "recorded.pcap")
	var b bytes.Buffer
	if err := framepcap.WritePcap(&b, recs...); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// inject sends payloads as they were recorded to dst, from the host's own
// address.
func inject(t *testing.T, c *packet.Conn, dst net.HardwareAddr, payloads [][]byte) {
	t.Helper()
	for _, f := range payloads {
		if _, err := c.WriteTo(f, &packet.Addr{HardwareAddr: dst}); err != nil {
			t.Fatal(err)
		}
	}
}

var broadcast = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

func macOf(t *testing.T, ns, ifname string) net.HardwareAddr {
	t.Helper()
	s, err := netns.MAC(ns, ifname)
	if err != nil {
		t.Fatal(err)
	}
	mac, err := net.ParseMAC(s)
	if err != nil {
		t.Fatal(err)
	}
	return mac
}

// wireStatus is the part of `status --json` these tests read, parsed here
// so that they also build against daemons without the newer counters.
type wireStatus struct {
	Role   string   `json:"role"`
	Epoch  uint64   `json:"epoch"`
	Alarms []string `json:"alarms"`
	Faults []string `json:"faults"`
	Frames struct {
		Accepted  uint64 `json:"accepted"`
		Replayed  uint64 `json:"replayed"`
		Stale     uint64 `json:"stale"`
		Reflected uint64 `json:"reflected"`
	} `json:"frames"`
}

func status(t *testing.T, p *netns.Pair, n *netns.Node) wireStatus {
	t.Helper()
	out, err := p.Run(n, "status", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var st wireStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	return st
}

// TestReplayedReleaseAfterRestart is the replay story of issue 12: a
// keyless host on LAN 1 records the main's RELEASE at a swap; later the
// spare restarts, the host holds the main's frames back for a moment (here:
// the main's ports are cut) and replays the RELEASE. The spare must not
// claim, and the primary must not lose its role once its frames return.
func TestReplayedReleaseAfterRestart(t *testing.T) {
	p := setup(t, netns.Options{ConnectionWait: 10 * time.Second})
	startPair(t, p)
	host := hostSocket(t, p.Client, "eth1")
	rec := record(host)
	mainMAC := macOf(t, p.Main.NS, "eth1")

	// Swap and swap back: the main sends RELEASE frames on LAN 1.
	if _, err := p.Run(p.Main, "swap"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.WaitRole(p.Spare, "primary", 3*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Run(p.Spare, "swap"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.WaitRole(p.Main, "primary", 3*time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	releases := rec.from(mainMAC, frame.TypeRelease)
	if len(releases) == 0 {
		t.Fatal("the host recorded no RELEASE of the main")
	}
	t.Logf("recorded %d RELEASE frames of the main: %s", len(releases), writePcap(t, mainMAC, releases))
	epoch := status(t, p, p.Main).Epoch

	// The spare restarts; the host holds the main's frames back and
	// replays the RELEASE as soon as the spare is up.
	if err := p.Stop(p.Spare); err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(p.CutLine(p.Main, true), p.CutLAN1(p.Main, true)); err != nil {
		t.Fatal(err)
	}
	if err := p.Start(p.Spare); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		inject(t, host, broadcast, releases)
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	st := status(t, p, p.Spare)
	if st.Role == "primary" || st.Epoch > epoch {
		t.Fatalf("the restarted spare took a replayed RELEASE: role %s, epoch %d (the primary's is %d)", st.Role, st.Epoch, epoch)
	}
	t.Logf("spare after the replay: role %s, frames %+v", st.Role, st.Frames)
	if st.Frames.Stale+st.Frames.Replayed == 0 {
		t.Errorf("the replayed frames were not counted: %+v", st.Frames)
	}

	// The main's frames come through again: nothing changed hands.
	if err := errors.Join(p.CutLine(p.Main, false), p.CutLAN1(p.Main, false)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.WaitRole(p.Spare, "secondary", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	m, s := status(t, p, p.Main), status(t, p, p.Spare)
	if m.Role != "primary" || m.Epoch != epoch || s.Epoch != epoch {
		t.Fatalf("after the replay: main %s epoch %d, spare %s epoch %d; want the main primary at epoch %d", m.Role, m.Epoch, s.Role, s.Epoch, epoch)
	}
}

// TestReflectedFrames: a host on LAN 1 sends every node its own heartbeats
// back. They are dropped and counted; no duplicate-node-id alarm, no change.
func TestReflectedFrames(t *testing.T) {
	p := setup(t, netns.Options{})
	startPair(t, p)
	host := hostSocket(t, p.Client, "eth1")
	rec := record(host)
	mainMAC, spareMAC := macOf(t, p.Main.NS, "eth1"), macOf(t, p.Spare.NS, "eth1")
	sent := 0
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		for _, mac := range []net.HardwareAddr{mainMAC, spareMAC} {
			fs := rec.from(mac, 0)
			if len(fs) == 0 {
				continue
			}
			inject(t, host, mac, fs[len(fs)-1:]) // back to its sender
			sent++
		}
	}
	time.Sleep(200 * time.Millisecond)
	for _, n := range []*netns.Node{p.Main, p.Spare} {
		st := status(t, p, n)
		if slices.Contains(st.Alarms, "duplicate-node-id") {
			t.Errorf("%s: reflected frames raised %v", n.Name, st.Alarms)
		}
		if st.Frames.Reflected == 0 {
			t.Errorf("%s: no reflected frame counted (%d sent back): %+v", n.Name, sent, st.Frames)
		}
		t.Logf("%s: %+v", n.Name, st.Frames)
	}
	if m, s := status(t, p, p.Main), status(t, p, p.Spare); m.Role != "primary" || s.Role != "secondary" {
		t.Errorf("roles %s/%s after the reflections", m.Role, s.Role)
	}
}

// TestLAN2InterfaceRecreated deletes the spare's failover-line veth and
// adds it again under the same name: heartbeats resume on the new
// interface with a warning in the log; while it stays gone the spare goes
// to fault (lan2-missing) and comes back from it.
func TestLAN2InterfaceRecreated(t *testing.T) {
	p := setup(t, netns.Options{ConnectionWait: 2 * time.Second})
	startPair(t, p)
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	del := func() { ip("-n", p.Switch, "link", "del", "s2") }
	add := func() {
		ip("-n", p.Switch, "link", "add", "s2", "type", "veth", "peer", "name", "eth2", "netns", p.Spare.NS)
		ip("-n", p.Switch, "link", "set", "s2", "master", "br2", "up")
		ip("-n", p.Spare.NS, "addr", "add", p.Spare.LAN2+"/24", "dev", "eth2")
		ip("-n", p.Spare.NS, "link", "set", "eth2", "up")
	}
	lineDown := func(n *netns.Node) bool { return slices.Contains(status(t, p, n).Alarms, "failover-line-down") }
	waitFor := func(what string, limit time.Duration, cond func() bool) {
		t.Helper()
		for end := time.Now().Add(limit); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
			if cond() {
				return
			}
		}
		t.Fatalf("%s: not within %v; main %+v, spare %+v", what, limit, status(t, p, p.Main), status(t, p, p.Spare))
	}

	// A short absence: the interface comes back under the same name.
	del()
	waitFor("failover-line-down while eth2 is gone", 3*time.Second, func() bool { return lineDown(p.Main) })
	add()
	waitFor("heartbeats on the new eth2", 3*time.Second, func() bool { return !lineDown(p.Main) && !lineDown(p.Spare) })
	log, _ := os.ReadFile(p.Spare.LogFile)
	if !strings.Contains(string(log), "socket reopened") {
		t.Errorf("no warning about the reopened socket in the spare's log")
	}

	// A long absence: fault, then back.
	del()
	waitFor("fault lan2-missing", 5*time.Second, func() bool {
		st := status(t, p, p.Spare)
		return st.Role == "fault" && slices.Contains(st.Faults, "lan2-missing")
	})
	add()
	waitFor("secondary again", 5*time.Second, func() bool {
		st := status(t, p, p.Spare)
		return st.Role == "secondary" && len(st.Faults) == 0 && !lineDown(p.Main)
	})
	if st := status(t, p, p.Main); st.Role != "primary" {
		t.Errorf("main %s after the spare's interface came back", st.Role)
	}
}
