package hil

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pairguard/pairguard/firmware/panel"
)

// steady boots the pair and waits until the main is primary and the spare
// secondary, each seeing the other.
func steady(t *testing.T) (*pair, *node, *node) {
	t.Helper()
	p := newPair(t)
	n := p.boot(mainSpec, spareSpec)
	m, s := n[0], n[1]
	m.waitStatus("primary with the peer up", 90*time.Second, func(st status) bool {
		return st.Role == "primary" && st.Peer.State == "up"
	})
	s.waitStatus("secondary with the peer up", 30*time.Second, func(st status) bool {
		return st.Role == "secondary" && st.Peer.State == "up"
	})
	t.Logf("hil: pair steady %.1fs after launch", time.Since(m.booted).Seconds())
	return p, m, s
}

// TestImageIsTheShippedFiles boots one board and checks that the files the
// Buildroot package and overlay install are in the image as they are in the
// repository.
func TestImageIsTheShippedFiles(t *testing.T) {
	p := newPair(t)
	m := p.boot(mainSpec)[0]
	if out, _ := m.run("uname -m", 10*time.Second); !strings.Contains(out, "aarch64") {
		t.Errorf("uname -m = %q, want aarch64", out)
	}
	root := filepath.Join("..", "..", "buildroot")
	want := map[string]string{"/etc/init.d/S60pairguard": filepath.Join(root, "package", "pairguard", "S60pairguard")}
	overlay := filepath.Join(root, "board", "qemu-aarch64-virt", "rootfs-overlay")
	err := filepath.WalkDir(overlay, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(overlay, path)
		want["/"+filepath.ToSlash(rel)] = path
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for guest, host := range want {
		if guest == "/etc/pairguard/pairguard.toml" {
			continue // replaced by the per-board config, as provisioning does
		}
		b, err := os.ReadFile(host)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		out, code := m.run("sha256sum "+guest, 10*time.Second)
		if code != 0 || !strings.HasPrefix(strings.TrimSpace(out), hex.EncodeToString(sum[:])) {
			t.Errorf("%s in the image differs from %s: %q", guest, host, out)
		}
	}
	// The datastore device of the board file is the emulated SD card.
	dev := strings.TrimPrefix(p.img.board.Datastore, "/dev/")
	if out, _ := m.run("cat /sys/block/"+dev+"/size", 10*time.Second); strings.TrimSpace(out) != fmt.Sprint(sdSize/512) {
		t.Errorf("%s has %q sectors, want %d", p.img.board.Datastore, out, sdSize/512)
	}
	for lan, ifname := range map[int]string{1: p.img.board.LAN1, 2: p.img.board.LAN2} {
		out, _ := m.run("cat /sys/class/net/"+ifname+"/address", 10*time.Second)
		if strings.TrimSpace(out) != mainSpec.mac(lan) {
			t.Errorf("%s has MAC %q, want LAN %d's %s", ifname, out, lan, mainSpec.mac(lan))
		}
	}
}

// TestColdBoot: both boards power up together; the main becomes primary,
// the spare secondary, each sees the other, the client reaches the service
// address, and the LEDs show green on the main and amber on the spare.
func TestColdBoot(t *testing.T) {
	_, m, s := steady(t)
	if !clientPing(t, serviceAddr) {
		t.Errorf("client cannot reach the service address %s", serviceAddr)
	}
	// No datastore in this pair: the daemon counts the mirror as in sync.
	m.waitRoleLight(panel.Light{Colour: panel.ColourGreen, Pattern: panel.Solid}, 10*time.Second)
	s.waitRoleLight(panel.Light{Colour: panel.ColourAmber, Pattern: panel.Solid}, 10*time.Second)
	m.waitFailoverLED(panel.Off, 5*time.Second)
	s.waitFailoverLED(panel.Off, 5*time.Second)
	now := time.Now()
	t.Logf("hil: LEDs main: %s; spare: %s", m.leds(now, 3*time.Second), s.leds(now, 3*time.Second))
}

// TestPowerLossOfMain: the main loses power; the client reaches the service
// address at the spare within failover-time + 1 s, and the spare's failover
// LED lights.
func TestPowerLossOfMain(t *testing.T) {
	_, m, s := steady(t)
	ping := startPinger(t, serviceAddr)
	if _, ok := ping.firstAfter(time.Now().Add(-time.Second), 10*time.Second); !ok {
		t.Fatalf("client cannot reach the service address %s before the power cut", serviceAddr)
	}
	cut := m.powerOff()
	// Replies later than this cannot come from the dead main.
	first, ok := ping.firstAfter(cut.Add(100*time.Millisecond), failoverTime+10*time.Second)
	if !ok {
		t.Fatalf("client never reached the service address after the main's power cut")
	}
	took := first.Sub(cut)
	t.Logf("hil: FAILOVER service address answered by the spare %v after the main's power cut (failover-time %v)", took.Round(time.Millisecond), failoverTime)
	if took > failoverTime+time.Second {
		t.Errorf("failover took %v, want at most failover-time + 1 s = %v", took, failoverTime+time.Second)
	}
	// The client's ARP entry moved to the spare (its gratuitous ARP).
	neigh := inNS(t, nsClient, "ip", "neigh", "show", serviceAddr)
	if !strings.Contains(neigh, spareSpec.mac(1)) {
		t.Errorf("client's neighbour entry for %s is %q, want the spare's LAN 1 MAC %s", serviceAddr, strings.TrimSpace(neigh), spareSpec.mac(1))
	}
	st := s.waitStatus("primary", 10*time.Second, func(st status) bool { return st.Role == "primary" })
	if st.Peer.State == "up" {
		t.Errorf("spare sees the dead main as up: %+v", st)
	}
	// A dead main is silent on both paths at once: no failover-line alarm.
	// (LAN 2 going silent a moment before LAN 1 does, because the last LAN 1
	// heartbeat came after the last LAN 2 one, is not a cut line.)
	if slices.Contains(st.Alarms, "failover-line-down") || st.Unacked {
		t.Errorf("spare raised a failover-line alarm for a power loss: alarms %v, unacknowledged %v", st.Alarms, st.Unacked)
	}
	// Primary with the peer missing, failover LED lit until acknowledged.
	s.waitFailoverLED(panel.Solid, 10*time.Second)
	s.waitRoleLight(panel.Light{Colour: panel.ColourGreen, Pattern: panel.SlowBlink}, 10*time.Second)
	now := time.Now()
	t.Logf("hil: LEDs spare: %s", s.leds(now, 3*time.Second))
}

// lineCut cuts the failover line at the main (its LAN 2 link goes down) and
// waits until the spare raises the failover-line-down alarm without taking
// over.
func lineCut(t *testing.T) (*node, *node) {
	t.Helper()
	_, m, s := steady(t)
	m.monitor("set_link l2 off")
	cut := time.Now()
	st := s.waitStatus("alarmed", failoverTime+20*time.Second, func(st status) bool {
		return slices.Contains(st.Alarms, "failover-line-down")
	})
	t.Logf("hil: spare raised failover-line-down %.1fs after the cut", time.Since(cut).Seconds())
	if st.Role == "primary" {
		t.Fatalf("spare took over although the main is alive on LAN 1: %+v", st)
	}
	// Well past failover-time: still no takeover.
	time.Sleep(failoverTime + time.Second)
	if st, ok := s.status(); ok && st.Role == "primary" {
		t.Fatalf("spare took over although the main is alive on LAN 1: %+v", st)
	}
	if st, ok := m.status(); !ok || st.Role != "primary" {
		t.Errorf("main is no longer primary after its failover line was cut: %+v", st)
	}
	if !clientPing(t, serviceAddr) {
		t.Errorf("client lost the service address %s", serviceAddr)
	}
	return m, s
}

// TestFailoverLineCut: only the failover line is cut at the main: no
// takeover, and the spare shows the alarm (red fast blink).
func TestFailoverLineCut(t *testing.T) {
	m, s := lineCut(t)
	alarm := panel.Light{Colour: panel.ColourRed, Pattern: panel.FastBlink}
	s.waitRoleLight(alarm, 10*time.Second)
	s.waitFailoverLED(panel.Off, 5*time.Second)
	now := time.Now()
	t.Logf("hil: LEDs main: %s; spare: %s", m.leds(now, 3*time.Second), s.leds(now, 3*time.Second))
}

// TestButtonAcknowledgesAlarm: a short press of the spare's button
// acknowledges the failover-line-down alarm: the red fast blink stops and the
// role LED shows the role again (secondary, peer up: amber).
func TestButtonAcknowledgesAlarm(t *testing.T) {
	_, s := lineCut(t)
	s.waitRoleLight(panel.Light{Colour: panel.ColourRed, Pattern: panel.FastBlink}, 10*time.Second)
	s.pressButton()
	pressed := time.Now()
	s.waitStatus("acknowledged", 10*time.Second, func(st status) bool { return !st.Unacked })
	t.Logf("hil: alarm acknowledged %.1fs after the press", time.Since(pressed).Seconds())
	s.waitRoleLight(panel.Light{Colour: panel.ColourAmber, Pattern: panel.Solid}, 10*time.Second)
	if st, ok := s.status(); ok && !slices.Contains(st.Alarms, "failover-line-down") {
		t.Logf("hil: note: the alarm cleared while the line is still cut: %+v", st)
	}
}

// TestSerialConsoleStatus: `pairguard status` typed on the serial console
// prints the role.
func TestSerialConsoleStatus(t *testing.T) {
	p := newPair(t)
	m := p.boot(mainSpec)[0]
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, code := m.run("pairguard status", 20*time.Second)
		if code == 0 && strings.Contains(out, "role") {
			for _, role := range []string{"starting", "primary", "secondary", "fault", "standalone"} {
				if strings.Contains(out, role) {
					t.Logf("hil: console status:\n%s", out)
					return
				}
			}
			t.Fatalf("status names no role:\n%s", out)
		}
		if time.Now().After(deadline) {
			t.Fatalf("pairguard status on the console: exit %d:\n%s", code, out)
		}
		time.Sleep(time.Second)
	}
}

// TestSerialConsolePrompt: `pairguard console --tty /dev/ttyAMA0` started
// from the console's shell gives the prompt; `status` typed there prints the
// role, and `exit` hands the terminal back to the shell.
func TestSerialConsolePrompt(t *testing.T) {
	p := newPair(t)
	m := p.boot(mainSpec)[0]
	m.waitStatus("answering", 30*time.Second, func(status) bool { return true })
	m.typeRaw("pairguard console --tty /dev/ttyAMA0\r")
	m.waitConsole("pairguard> ", 20*time.Second)
	mark := len(m.consoleLog())
	m.typeRaw("help\r")
	m.waitConsoleAfter(mark, "check-config", 10*time.Second)
	mark = len(m.consoleLog())
	m.typeRaw("stat\x03status\r") // Ctrl-C abandons the first line
	out := m.waitConsoleAfter(mark, "alarms", 20*time.Second)
	if !strings.Contains(out, "^C") || !strings.Contains(out, "role") {
		t.Errorf("console prompt output:\n%s", out)
	}
	for _, line := range strings.Split(out, "\n") {
		if len([]rune(line)) > 80 {
			t.Errorf("line longer than 80 columns: %q", line)
		}
	}
	t.Logf("hil: console prompt:\n%s", out)
	mark = len(m.consoleLog())
	m.typeRaw("exit\r")
	// What is typed before the shell's prompt returns may be read by the
	// exiting console: wait for the prompt.
	m.waitConsoleAfter(mark, "/ # ", 10*time.Second)
	if got, code := m.run("echo back in the shell", 20*time.Second); code != 0 || !strings.Contains(got, "back in the shell") {
		t.Errorf("shell after exit: %q (exit %d)", got, code)
	}
}

// TestInitScriptRespawns: the shipped init script restarts a crashed daemon,
// and stop/start/restart work.
func TestInitScriptRespawns(t *testing.T) {
	p := newPair(t)
	m := p.boot(mainSpec)[0]
	m.waitStatus("answering", 30*time.Second, func(status) bool { return true })
	pid := func() string {
		out, _ := m.run("cat /var/run/pairguard.pid", 10*time.Second)
		return strings.TrimSpace(out)
	}
	first := pid()
	m.run("kill -9 "+first, 10*time.Second)
	m.waitStatus("answering after a crash", 30*time.Second, func(status) bool { return true })
	if second := pid(); second == first || second == "" {
		t.Errorf("daemon pid %q after kill -9 of %q: not restarted", second, first)
	}
	if out, _ := m.run("logread | grep -c 'restarting in'", 10*time.Second); strings.TrimSpace(out) == "0" {
		t.Errorf("no respawn message in syslog")
	}
	if out, code := m.run("/etc/init.d/S60pairguard stop; pidof pairguard", 30*time.Second); code == 0 {
		t.Errorf("pairguard still running after stop: %q", out)
	}
	if out, code := m.run("/etc/init.d/S60pairguard start", 30*time.Second); code != 0 || !strings.Contains(out, "OK") {
		t.Errorf("start: %q (exit %d)", out, code)
	}
	m.waitStatus("answering after start", 30*time.Second, func(status) bool { return true })
	before := pid()
	if out, code := m.run("/etc/init.d/S60pairguard restart", 30*time.Second); code != 0 {
		t.Errorf("restart: %q (exit %d)", out, code)
	}
	m.waitStatus("answering after restart", 30*time.Second, func(status) bool { return true })
	if after := pid(); after == before {
		t.Errorf("restart kept pid %s", after)
	}
	if out, _ := m.run("pidof pairguard | wc -w", 10*time.Second); strings.TrimSpace(out) != "1" {
		t.Errorf("%s pairguard processes after restart, want 1", strings.TrimSpace(out))
	}
}

// TestDatastoreMirror: with a [datastore] on both SD cards, the spare's copy
// becomes identical to the main's, and after the main's power cut the spare
// serves with that data. Skips while the daemon runs without a mirror.
func TestDatastoreMirror(t *testing.T) {
	data := make([]byte, 4<<20)
	for i := range data {
		data[i] = byte(i*7 + i>>12) // not zero, not one repeated block
	}
	ds := "mode = \"periodic\"\ninterval = \"2s\""
	ms, ss := mainSpec, spareSpec
	ms.datastore, ss.datastore = ds, ds
	ms.sdFill = data
	p := newPair(t)
	n := p.boot(ms, ss)
	m, s := n[0], n[1]
	m.waitStatus("primary", 90*time.Second, func(st status) bool { return st.Role == "primary" })
	time.Sleep(5 * time.Second)
	if st, ok := s.status(); ok && st.Mirror.State == "off" {
		t.Skipf("hil: the daemon reports mirror off with a [datastore] configured: the mirror is not wired in yet (%+v)", st)
	}
	s.waitStatus("in sync", 120*time.Second, func(st status) bool { return st.Mirror.State == "in-sync" })
	hash := func(n *node) string {
		out, code := n.run(fmt.Sprintf("head -c %d %s | sha256sum", sdSize, p.img.board.Datastore), 60*time.Second)
		if code != 0 {
			t.Fatalf("%s: hashing the datastore: %q", n.spec.name, out)
		}
		return strings.Fields(out)[0]
	}
	want := sha256.Sum256(append(data, make([]byte, sdSize-len(data))...))
	if got := hash(m); got != hex.EncodeToString(want[:]) {
		t.Fatalf("main's datastore changed: %s", got)
	}
	if got := hash(s); got != hex.EncodeToString(want[:]) {
		t.Fatalf("spare's datastore %s differs from the main's %x", got, want)
	}
	m.powerOff()
	st := s.waitStatus("primary", 20*time.Second, func(st status) bool { return st.Role == "primary" })
	if st.Data.State != "up-to-date" {
		t.Errorf("spare took over with data %q", st.Data.State)
	}
	if got := hash(s); got != hex.EncodeToString(want[:]) {
		t.Errorf("spare's datastore changed at takeover: %s", got)
	}
}

// TestCleanShutdownHandsOver: `poweroff` on the main's console runs the
// init scripts' stop (S60pairguard stop, SIGTERM to the daemon), and the
// primary hands over to the spare by RELEASE: the client's outage stays well
// under failover-time, and the spare never sees a failover.
func TestCleanShutdownHandsOver(t *testing.T) {
	_, m, s := steady(t)
	ping := startPinger(t, serviceAddr)
	if _, ok := ping.firstAfter(time.Now().Add(-time.Second), 10*time.Second); !ok {
		t.Fatalf("client cannot reach the service address %s", serviceAddr)
	}
	start := time.Now()
	m.typeRaw("poweroff\r")
	select {
	case <-m.exited:
		m.pid = 0
		t.Logf("hil: main powered off %.1fs after the command", time.Since(start).Seconds())
	case <-time.After(60 * time.Second):
		t.Fatalf("main did not power off")
	}
	st := s.waitStatus("primary", 10*time.Second, func(st status) bool { return st.Role == "primary" })
	time.Sleep(time.Second) // replies after the handover
	gap := ping.maxGap(start, time.Now())
	t.Logf("hil: HANDOVER longest client outage %v during the main's clean shutdown", gap.Round(time.Millisecond))
	if gap >= failoverTime {
		t.Errorf("outage %v during a planned handover, want less than failover-time %v", gap, failoverTime)
	}
	if st.Failover {
		t.Errorf("failover LED lit after a planned handover: %+v", st)
	}
	if slices.Contains(st.Alarms, "failover-line-down") {
		t.Errorf("alarm after a planned handover: %v", st.Alarms)
	}
}
