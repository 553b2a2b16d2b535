package panel

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pairguard/pairguard/board"
	"github.com/pairguard/pairguard/firmware/engine"
)

var update = flag.Bool("update", false, "rewrite testdata/patterns.golden")

var (
	roles   = []engine.Role{engine.RoleStarting, engine.RolePrimary, engine.RoleSecondary, engine.RoleFault, engine.RoleStandalone}
	peers   = []engine.PeerState{engine.PeerUnknown, engine.PeerUp, engine.PeerDown}
	mirrors = []engine.MirrorState{engine.MirrorOff, engine.MirrorConnecting, engine.MirrorSyncing, engine.MirrorInSync, engine.MirrorBehind, engine.MirrorSplitBrain}
)

func TestPatternsTable(t *testing.T) {
	const (
		P, S, F, X, St = engine.RolePrimary, engine.RoleSecondary, engine.RoleFault, engine.RoleStarting, engine.RoleStandalone
		up, down, unk  = engine.PeerUp, engine.PeerDown, engine.PeerUnknown
		off, conn, syn = engine.MirrorOff, engine.MirrorConnecting, engine.MirrorSyncing
		ins, beh, sb   = engine.MirrorInSync, engine.MirrorBehind, engine.MirrorSplitBrain
	)
	green, amber, red := ColourGreen, ColourAmber, ColourRed
	for _, tc := range []struct {
		s    State
		want Light
	}{
		// The product rules for the role LED (the README's Front panel table).
		{State{Role: P, Peer: up, Mirror: ins}, Light{green, Solid}},
		{State{Role: P, Peer: down, Mirror: off}, Light{green, SlowBlink}},
		{State{Role: S, Peer: up, Mirror: ins}, Light{amber, Solid}},
		{State{Role: S, Peer: up, Mirror: syn}, Light{amber, SlowBlink}},
		{State{Role: P, Peer: up, Mirror: syn}, Light{amber, SlowBlink}},
		{State{Role: F, Peer: up, Mirror: off}, Light{red, Solid}},
		{State{Role: P, Peer: up, Mirror: sb, Alarm: true}, Light{red, FastBlink}},
		{State{Role: S, Peer: up, Mirror: ins, Alarm: true}, Light{red, FastBlink}},
		// The rest.
		{State{Role: P, Peer: unk, Mirror: off}, Light{green, SlowBlink}},
		{State{Role: P, Peer: up, Mirror: conn}, Light{green, SlowBlink}},
		{State{Role: P, Peer: up, Mirror: off}, Light{green, SlowBlink}},
		{State{Role: P, Peer: up, Mirror: beh}, Light{green, Solid}},
		{State{Role: P, Peer: up, Mirror: sb}, Light{green, SlowBlink}}, // acknowledged
		{State{Role: P, Peer: down, Mirror: syn}, Light{green, SlowBlink}},
		{State{Role: S, Peer: up, Mirror: beh}, Light{amber, Solid}},
		{State{Role: S, Peer: up, Mirror: conn}, Light{amber, SlowBlink}},
		{State{Role: S, Peer: up, Mirror: off}, Light{amber, SlowBlink}},
		{State{Role: S, Peer: down, Mirror: off}, Light{red, SlowBlink}},
		{State{Role: S, Peer: unk, Mirror: ins}, Light{red, SlowBlink}},
		{State{Role: S, Peer: up, Mirror: sb}, Light{red, SlowBlink}},
		{State{Role: X, Peer: unk, Mirror: off}, Light{amber, FastBlink}},
		{State{Role: X, Peer: up, Mirror: conn}, Light{amber, FastBlink}},
		{State{Role: X, Peer: unk, Mirror: off, Alarm: true}, Light{red, FastBlink}},
		{State{Role: St, Peer: unk, Mirror: off}, Light{green, Solid}},
		{State{Role: St, Peer: unk, Mirror: off, Alarm: true}, Light{red, FastBlink}},
		{State{Role: P, Peer: up, Mirror: ins, Fault: true}, Light{red, Solid}},
		{State{Role: F, Peer: down, Mirror: off, Alarm: true}, Light{red, Solid}},
		{State{}, Light{ColourOff, Off}},
	} {
		if got := Patterns(tc.s).Role; got != tc.want {
			t.Errorf("Patterns(%+v).Role = %v, want %v", tc.s, got, tc.want)
		}
	}
}

func TestFailoverLED(t *testing.T) {
	base := State{Role: engine.RolePrimary, Peer: engine.PeerDown, Mirror: engine.MirrorOff}
	for _, tc := range []struct {
		lit  bool
		held Action
		want Pattern
	}{
		{false, 0, Off},
		{true, 0, Solid},
		{true, ActionNone, Solid},
		{true, ActionAcknowledge, Solid},
		{false, ActionSync, SlowBlink},
		{true, ActionSwap, FastBlink},
	} {
		s := base
		s.FailoverLit, s.Held = tc.lit, tc.held
		if got := Patterns(s).Failover; got != tc.want {
			t.Errorf("lit %v held %v: failover %v, want %v", tc.lit, tc.held, got, tc.want)
		}
	}
}

// TestPatternsGolden writes every engine state's display to a golden file;
// a change of the table in the package doc must show up here.
func TestPatternsGolden(t *testing.T) {
	var b strings.Builder
	b.WriteString("role\tpeer\tmirror\talarm\tfault\t-> role LED\n")
	for _, r := range roles {
		for _, p := range peers {
			for _, m := range mirrors {
				for _, flags := range [][2]bool{{false, false}, {true, false}, {false, true}} {
					s := State{Role: r, Peer: p, Mirror: m, Alarm: flags[0], Fault: flags[1]}
					fmt.Fprintf(&b, "%v\t%v\t%v\t%v\t%v\t-> %v\n", r, p, m, flags[0], flags[1], Patterns(s).Role)
				}
			}
		}
	}
	const golden = "testdata/patterns.golden"
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -run Golden -update)", err)
	}
	if string(want) != b.String() {
		t.Errorf("patterns differ from %s; run go test -run Golden -update and review the diff", golden)
	}
}

func TestLevel(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		p    Pattern
		t    time.Duration
		want bool
	}{
		{Off, 0, false}, {Off, 250 * ms, false},
		{Solid, 0, true}, {Solid, 12345 * ms, true},
		{SlowBlink, 0, true}, {SlowBlink, 499 * ms, true}, {SlowBlink, 500 * ms, false},
		{SlowBlink, 999 * ms, false}, {SlowBlink, 1000 * ms, true}, {SlowBlink, 61500 * ms, false},
		{FastBlink, 0, true}, {FastBlink, 99 * ms, true}, {FastBlink, 100 * ms, false},
		{FastBlink, 150 * ms, false}, {FastBlink, 200 * ms, true}, {FastBlink, 1050 * ms, true},
		{SlowBlink, -1 * ms, false}, {SlowBlink, -501 * ms, true},
		{FastBlink, -100 * ms, false}, {FastBlink, -101 * ms, true},
		{patternInvalid, 0, false},
	} {
		if got := Level(tc.p, tc.t); got != tc.want {
			t.Errorf("Level(%v, %v) = %v, want %v", tc.p, tc.t, got, tc.want)
		}
	}
	// Duty cycle: half on, half off, over whole periods sampled every tick.
	for _, p := range []Pattern{SlowBlink, FastBlink} {
		on := 0
		const n = 400
		for i := range n {
			if Level(p, time.Duration(i)*Tick) {
				on++
			}
		}
		if on != n/2 {
			t.Errorf("%v: %d of %d ticks on", p, on, n)
		}
	}
}

func TestChannels(t *testing.T) {
	amber := Display{Role: Light{ColourAmber, SlowBlink}, Failover: Solid}
	bi := amber.Channels(false)
	if bi[ChannelRoleRed] != SlowBlink || bi[ChannelRoleGreen] != SlowBlink || bi[ChannelRoleAmber] != Off || bi[ChannelFailover] != Solid {
		t.Errorf("bicolour amber: %v", bi)
	}
	sep := amber.Channels(true)
	if sep[ChannelRoleRed] != Off || sep[ChannelRoleGreen] != Off || sep[ChannelRoleAmber] != SlowBlink {
		t.Errorf("separate amber: %v", sep)
	}
	red := Display{Role: Light{ColourRed, FastBlink}, Failover: Off}.Channels(false)
	if red[ChannelRoleRed] != FastBlink || red[ChannelRoleGreen] != Off || red[ChannelFailover] != Off {
		t.Errorf("red: %v", red)
	}
	dark := Display{Role: Light{ColourOff, Off}, Failover: Off}.Channels(true)
	for ch, p := range dark {
		if p != Off {
			t.Errorf("dark: %v is %v", ch, p)
		}
	}
}

func TestStrings(t *testing.T) {
	if ColourAmber.String() != "amber" || SlowBlink.String() != "slow-blink" || ActionSwap.String() != "swap" ||
		ChannelFailover.String() != "failover" || Pattern(99).String() != "Pattern(99)" {
		t.Error("String() mismatch")
	}
	if s := (Light{ColourGreen, Solid}).String(); s != "green solid" {
		t.Errorf("Light.String() = %q", s)
	}
}

func TestWiring(t *testing.T) {
	b, err := board.Load("qemu-virt-arm64", nil)
	if err != nil {
		t.Fatal(err)
	}
	w := Wiring(b.LEDs)
	if w[ChannelRoleGreen].Line != "led-role-green" || w[ChannelRoleRed].Line != "led-role-red" ||
		w[ChannelFailover].Line != "led-failover" || w[ChannelRoleAmber].Kind != board.OutputNone {
		t.Errorf("wiring %v", w)
	}
	for _, ch := range Channels() {
		if _, ok := w[ch]; !ok {
			t.Errorf("channel %v missing", ch)
		}
	}
}
