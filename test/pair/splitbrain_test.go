package pair

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pairguard/pairguard/test/netns"
)

// isolate cuts n off at the switch with every carrier up: an nft bridge
// table in the switch namespace drops whatever enters or leaves n's two
// ports. Heal removes it.
func isolate(t *testing.T, p *netns.Pair, n *netns.Node) (heal func()) {
	t.Helper()
	ports := n.Name[:1] + "1, " + n.Name[:1] + "2"
	rules := "table bridge pgcut {\n chain forward {\n  type filter hook forward priority 0; policy accept;\n" +
		"  iifname { " + ports + " } drop\n  oifname { " + ports + " } drop\n }\n}\n"
	if out, err := netns.Exec(p.Switch, "sh", "-c", "printf '%s' '"+rules+"' | nft -f -"); err != nil {
		t.Skipf("nft bridge table unavailable: %v\n%s", err, out)
	}
	return func() {
		if out, err := netns.Exec(p.Switch, "nft", "delete", "table", "bridge", "pgcut"); err != nil {
			t.Errorf("heal: %v\n%s", err, out)
		}
	}
}

// partitionStory forms a synced pair, cuts the main off at the switch
// while it stays primary, lets the spare take over, writes on the sides
// asked for and heals the network.
func partitionStory(t *testing.T, extra string, mainWrites, spareWrites bool) (p *netns.Pair, mainImage [32]byte) {
	t.Helper()
	p = setup(t, netns.Options{Datastore: imageSize, SyncEvery: 500 * time.Millisecond, Extra: extra})
	scribble(t, p.Main.Image, 200, 1)
	startPair(t, p)
	waitSame(t, p, p.Main, p.Spare, 30*time.Second)
	heal := isolate(t, p, p.Main)
	if _, err := p.WaitRole(p.Spare, "primary", 10*time.Second); err != nil {
		heal()
		t.Fatal(err)
	}
	if st, _ := p.Status(p.Main); st.Role != "primary" {
		t.Fatalf("the cut-off main is %s, want still primary (no witness)", st.Role)
	}
	// The main's engine noticed the lost peer; give its new generation a
	// moment to be saved before the applications write.
	time.Sleep(300 * time.Millisecond)
	if mainWrites {
		scribble(t, p.Main.Image, 40, 11)
	}
	if spareWrites {
		scribble(t, p.Spare.Image, 40, 12)
	}
	mainImage = fileHash(t, p.Main.Image)
	heal()
	if _, err := p.WaitRole(p.Main, "secondary", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	return p, mainImage
}

func TestPartitionBothWriteIsSplitBrain(t *testing.T) {
	p, mainImage := partitionStory(t, "", true, true)
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, _ := p.Status(p.Main)
		if slices.Contains(st.Alarms, "split-brain") && st.Mirror.State == "split-brain" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no split-brain alarm on the main: %+v", st)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Rounds would have run by now: nothing may be overwritten.
	time.Sleep(2 * time.Second)
	if fileHash(t, p.Main.Image) != mainImage {
		t.Fatal("the main's partition-time writes were overwritten")
	}
	out, _ := p.Run(p.Main, "log", "-n", "60")
	if !strings.Contains(out, "split brain") {
		t.Errorf("no split brain in the main's logbook:\n%s", out)
	}
	// The operator keeps the spare's data on the main.
	if out, err := p.Run(p.Main, "resolve", "--discard-local"); err != nil {
		t.Fatalf("resolve: %v\n%s", err, out)
	}
	waitSame(t, p, p.Spare, p.Main, 30*time.Second)
	if st, _ := p.Status(p.Main); slices.Contains(st.Alarms, "split-brain") {
		t.Errorf("split-brain alarm still raised after resolve: %v", st.Alarms)
	}
}

func TestPartitionUnchangedMainResolvesItself(t *testing.T) {
	p, _ := partitionStory(t, "", false, true)
	waitSame(t, p, p.Spare, p.Main, 30*time.Second)
	st, _ := p.Status(p.Main)
	if st.Data.State != "up-to-date" {
		t.Errorf("main data %s after the automatic resolution", st.Data.State)
	}
	out, _ := p.Run(p.Main, "log", "-n", "60")
	if !strings.Contains(out, "discard-zero-changes") {
		t.Errorf("the main's logbook does not say why it discarded:\n%s", out)
	}
}

func TestPartitionManualWaits(t *testing.T) {
	p, mainImage := partitionStory(t, "split-brain = \"manual\"\n", false, true)
	time.Sleep(3 * time.Second)
	st, _ := p.Status(p.Main)
	if st.Mirror.State != "split-brain" || fileHash(t, p.Main.Image) != mainImage {
		t.Fatalf("split-brain = manual: main mirror %s, image changed %v", st.Mirror.State, fileHash(t, p.Main.Image) != mainImage)
	}
}
