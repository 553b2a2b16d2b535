package pair

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pairguard/pairguard/test/netns"
)

// The teach-in between real daemons: configs without pair-key, the spare's
// with no service address and no timers.

// setupTeachIn writes a main config without pair-key and a minimal spare
// config, and starts both.
func setupTeachIn(t *testing.T) *netns.Pair {
	t.Helper()
	if bin == "" {
		t.Skip(netns.Available())
	}
	p, err := netns.Setup(t.TempDir(), bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range append([]*netns.Node{p.Main, p.Spare}, p.Extra...) {
				log, _ := os.ReadFile(n.LogFile)
				t.Logf("%s log:\n%s", n.Name, tail(string(log), 40))
			}
		}
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	if err := p.WriteConfig(p.Main, netns.Options{NoPairKey: true}); err != nil {
		t.Fatal(err)
	}
	if err := p.WriteConfig(p.Spare, netns.Options{NoPairKey: true, Minimal: true}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*netns.Node{p.Main, p.Spare} {
		if err := p.Start(n); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

var codeRE = regexp.MustCompile(`code (\d{4}-\d{4})`)

// begin opens the main's window and returns the code it printed.
func begin(t *testing.T, p *netns.Pair, main *netns.Node) string {
	t.Helper()
	out, err := p.Run(main, "pair", "begin")
	if err != nil {
		t.Fatal(err)
	}
	m := codeRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("pair begin printed no code: %q", out)
	}
	return m[1]
}

// waitPairing polls n until cond holds on its status (errors, as during
// an internal restart, are retried).
func waitPairing(t *testing.T, p *netns.Pair, n *netns.Node, what string, timeout time.Duration, cond func(netns.Status) bool) netns.Status {
	t.Helper()
	var last netns.Status
	for start := time.Now(); time.Since(start) < timeout; time.Sleep(20 * time.Millisecond) {
		st, err := p.Status(n)
		if err == nil && st.Pairing != nil && cond(st) {
			return st
		}
		if err == nil {
			last = st
		}
	}
	t.Fatalf("%s: %s not reached after %v (last %+v)", n.Name, what, timeout, last)
	return last
}

func step(s string) func(netns.Status) bool {
	return func(st netns.Status) bool { return st.Pairing.Step == s }
}

// teach runs begin, join and accept between main and spare and waits until
// both are paired and the pair has formed.
func teach(t *testing.T, p *netns.Pair, main, spare *netns.Node) {
	t.Helper()
	code := begin(t, p, main)
	if _, err := p.Run(spare, "pair", "join", code); err != nil {
		t.Fatal(err)
	}
	ms := waitPairing(t, p, main, "pending", 10*time.Second, step("pending"))
	ss := waitPairing(t, p, spare, "pending", 5*time.Second, step("pending"))
	if ms.Pairing.Check == "" || ms.Pairing.Check != ss.Pairing.Check {
		t.Fatalf("check numbers differ: main %q, spare %q", ms.Pairing.Check, ss.Pairing.Check)
	}
	if ms.Pairing.Peer == nil || ms.Pairing.Peer.Name != spare.Name || ss.Pairing.Peer.Name != main.Name {
		t.Fatalf("peers: main sees %+v, spare sees %+v", ms.Pairing.Peer, ss.Pairing.Peer)
	}
	for _, n := range []*netns.Node{main, spare} {
		if _, err := p.Run(n, "pair", "accept"); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []*netns.Node{main, spare} {
		waitPairing(t, p, n, "paired", 10*time.Second, func(st netns.Status) bool { return st.Pairing.State == "paired" })
	}
	if _, err := p.WaitRole(main, "primary", 15*time.Second); err != nil {
		t.Fatal(err)
	}
	waitPairing(t, p, spare, "secondary with its peer up", 15*time.Second, func(st netns.Status) bool {
		return st.Role == "secondary" && st.Peer.State == "up" && st.Pairing.State == "paired"
	})
}

func TestTeachInFormsSurvivesRestartAndFailsOver(t *testing.T) {
	p := setupTeachIn(t)
	time.Sleep(4 * time.Second) // past the main's connection-wait-time
	for _, n := range []*netns.Node{p.Main, p.Spare} {
		st, err := p.Status(n)
		if err != nil {
			t.Fatal(err)
		}
		if st.Pairing == nil || st.Pairing.State != "unpaired" || !slices.Contains(st.Alarms, "unpaired") {
			t.Fatalf("%s before pairing: %+v, alarms %v", n.Name, st.Pairing, st.Alarms)
		}
		if st.Role == "primary" || p.HasAddress(n) {
			t.Fatalf("unpaired %s is %s", n.Name, st.Role)
		}
	}
	teach(t, p, p.Main, p.Spare)
	if p.HasAddress(p.Spare) || !p.HasAddress(p.Main) {
		t.Fatal("address not on the main alone")
	}

	// Both restart: still paired, the pair forms again.
	for _, n := range []*netns.Node{p.Main, p.Spare} {
		if err := p.Stop(n); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []*netns.Node{p.Main, p.Spare} {
		if err := p.Start(n); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.WaitRole(p.Main, "primary", 15*time.Second); err != nil {
		t.Fatal(err)
	}
	st := waitPairing(t, p, p.Spare, "secondary, paired, peer up", 15*time.Second, func(st netns.Status) bool {
		return st.Role == "secondary" && st.Peer.State == "up" && st.Pairing.State == "paired"
	})
	if slices.Contains(st.Alarms, "unpaired") {
		t.Fatalf("spare alarms after restart: %v", st.Alarms)
	}

	// The main loses power: the spare takes over the address it adopted.
	if err := p.PowerOff(p.Main); err != nil {
		t.Fatal(err)
	}
	if _, err := p.WaitRole(p.Spare, "primary", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	for start := time.Now(); !p.HasAddress(p.Spare); time.Sleep(20 * time.Millisecond) {
		if time.Since(start) > 5*time.Second {
			t.Fatal("the spare took over without the service address it adopted")
		}
	}
}

func TestTeachInWrongCodeBurnsTheWindow(t *testing.T) {
	p := setupTeachIn(t)
	code := begin(t, p, p.Main)
	wrong := "0000-0000"
	if code == wrong {
		wrong = "0000-0001"
	}
	if _, err := p.Run(p.Spare, "pair", "join", wrong); err != nil {
		t.Fatal(err)
	}
	st := waitPairing(t, p, p.Main, "window burned", 10*time.Second, step("unpaired"))
	if st.Pairing.Code != "" || st.Pairing.Peer != nil {
		t.Fatalf("main after a wrong code: %+v", st.Pairing)
	}
	waitPairing(t, p, p.Spare, "join ended", 10*time.Second, step("unpaired"))
	// The right code is of no use now: the window is closed.
	if _, err := p.Run(p.Spare, "pair", "join", code); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	for _, n := range []*netns.Node{p.Main, p.Spare} {
		st, _ := p.Status(n)
		if st.Pairing == nil || st.Pairing.State != "unpaired" || st.Role == "primary" {
			t.Fatalf("%s paired after a burned window: %+v %s", n.Name, st.Pairing, st.Role)
		}
	}
	if _, err := os.Stat(p.Main.Dir + "/state/pair.record"); err == nil {
		t.Fatal("the main persisted a record")
	}
}

func TestTeachInThirdUnitCannotJoin(t *testing.T) {
	p := setupTeachIn(t)
	third, err := p.AddNode("third", "spare", 13)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WriteConfig(third, netns.Options{NoPairKey: true, Minimal: true}); err != nil {
		t.Fatal(err)
	}
	if err := p.Start(third); err != nil {
		t.Fatal(err)
	}
	code := begin(t, p, p.Main)
	if _, err := p.Run(p.Spare, "pair", "join", code); err != nil {
		t.Fatal(err)
	}
	waitPairing(t, p, p.Main, "pending with the spare", 10*time.Second, step("pending"))
	// The third unit tries the same code (read over a shoulder): the
	// window admits no other spare once an exchange is confirmed.
	if _, err := p.Run(third, "pair", "join", code); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	st, _ := p.Status(third)
	if st.Pairing == nil || st.Pairing.Step != "joining" || st.Pairing.Peer != nil {
		t.Fatalf("third unit: %+v", st.Pairing)
	}
	ms, _ := p.Status(p.Main)
	if ms.Pairing.Peer == nil || ms.Pairing.Peer.Name != "spare" {
		t.Fatalf("main's peer: %+v", ms.Pairing.Peer)
	}
	if _, err := p.Run(third, "pair", "cancel"); err != nil {
		t.Fatal(err)
	}
}

func TestTeachInUnpairAndReplace(t *testing.T) {
	p := setupTeachIn(t)
	teach(t, p, p.Main, p.Spare)
	// The spare breaks; the main is unpaired and stays primary.
	if err := p.PowerOff(p.Spare); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Run(p.Main, "unpair"); err != nil {
		t.Fatal(err)
	}
	st, _ := p.Status(p.Main)
	if st.Pairing.State != "unpaired" || st.Role != "primary" || !p.HasAddress(p.Main) {
		t.Fatalf("main after unpair: %s %+v", st.Role, st.Pairing)
	}
	// A new unit is taught in.
	repl, err := p.AddNode("spare2", "spare", 14)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WriteConfig(repl, netns.Options{NoPairKey: true, Minimal: true}); err != nil {
		t.Fatal(err)
	}
	if err := p.Start(repl); err != nil {
		t.Fatal(err)
	}
	teach(t, p, p.Main, repl)
	if st, _ := p.Status(p.Main); st.Epoch != 1 || !p.HasAddress(p.Main) {
		t.Fatalf("main lost its role while teaching in: epoch %d", st.Epoch)
	}
	// The old spare comes back with its old record: its frames are of
	// another pair now.
	if err := p.PowerOn(p.Spare); err != nil {
		t.Fatal(err)
	}
	if err := p.Start(p.Spare); err != nil {
		t.Fatal(err)
	}
	waitPairing(t, p, p.Main, "old spare's frames counted as foreign", 10*time.Second, func(st netns.Status) bool {
		return st.Frames.Foreign > 0
	})
	if st, _ := p.Status(p.Main); st.Role != "primary" || st.Pairing.Peer == nil || st.Pairing.Peer.Name != "spare2" {
		t.Fatalf("main: %s, peer %+v", st.Role, st.Pairing.Peer)
	}
}

// A taught-in pair with a datastore: before the teach-in neither mirror
// connects; right after it, with neither daemon restarted (the spare's
// config says what the main's does, so it adopts without restarting), the
// mirror uses the identity keys the teach-in exchanged and brings the
// spare's image in sync with the main's.
func TestTeachInMirrorConnectsWithoutRestart(t *testing.T) {
	if bin == "" {
		t.Skip(netns.Available())
	}
	p, err := netns.Setup(t.TempDir(), bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range []*netns.Node{p.Main, p.Spare} {
				log, _ := os.ReadFile(n.LogFile)
				t.Logf("%s log:\n%s", n.Name, tail(string(log), 40))
			}
		}
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	for _, n := range []*netns.Node{p.Main, p.Spare} {
		if err := p.WriteConfig(n, netns.Options{NoPairKey: true, Datastore: imageSize, SyncEvery: time.Second}); err != nil {
			t.Fatal(err)
		}
	}
	scribble(t, p.Main.Image, 64, 1)
	for _, n := range []*netns.Node{p.Main, p.Spare} {
		if err := p.Start(n); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(4 * time.Second) // rounds would have run by now
	if st, err := p.Status(p.Spare); err != nil || st.Mirror.State == "in-sync" {
		t.Fatalf("spare before the teach-in: mirror %q, %v", st.Mirror.State, err)
	}
	teach(t, p, p.Main, p.Spare)
	waitSame(t, p, p.Main, p.Spare, 30*time.Second)
	for _, n := range []*netns.Node{p.Main, p.Spare} {
		log, _ := os.ReadFile(n.LogFile)
		if c := strings.Count(string(log), "restarting to adopt"); c != 0 {
			t.Fatalf("%s restarted %d times during the teach-in", n.Name, c)
		}
	}
}
