package pair

import (
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pairguard/pairguard/test/netns"
)

// pinger pings the service address from the client every 10 ms.
type pinger struct {
	cmd *exec.Cmd
	out *strings.Builder
}

func startPinger(t *testing.T, p *netns.Pair) *pinger {
	t.Helper()
	var out strings.Builder
	cmd := exec.Command("ip", "netns", "exec", p.Client, "ping", "-n", "-D", "-i", "0.01", "-W", "1", netns.ServiceAddr)
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pg := &pinger{cmd: cmd, out: &out}
	t.Cleanup(pg.stop)
	return pg
}

func (pg *pinger) stop() {
	if pg.cmd.Process != nil {
		pg.cmd.Process.Signal(syscall.SIGINT)
		pg.cmd.Wait()
		pg.cmd.Process = nil
	}
}

// replies returns how many echo replies the pinger printed.
func (pg *pinger) replies() int {
	pg.stop()
	return strings.Count(pg.out.String(), "bytes from")
}

func neighMAC(t *testing.T, p *netns.Pair) string {
	t.Helper()
	out, err := exec.Command("ip", "-n", p.Client, "neigh", "show", netns.ServiceAddr).CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(out))
	if i := slices.Index(f, "lladdr"); i >= 0 && i+1 < len(f) {
		return f[i+1]
	}
	return ""
}

func TestClientFollowsTakeover(t *testing.T) {
	p := setup(t, netns.Options{})
	startPair(t, p)
	mainMAC, _ := netns.MAC(p.Main.NS, "eth1")
	spareMAC, _ := netns.MAC(p.Spare.NS, "eth1")
	pg := startPinger(t, p)
	time.Sleep(500 * time.Millisecond)
	if got := neighMAC(t, p); got != mainMAC {
		t.Fatalf("client's ARP entry %q, want the main's %s", got, mainMAC)
	}
	measurePowerLoss(t, p)
	time.Sleep(500 * time.Millisecond)
	if got := neighMAC(t, p); got != spareMAC {
		t.Errorf("client's ARP entry %q after takeover, want the spare's %s (gratuitous ARP)", got, spareMAC)
	}
	before := pg.replies()
	pg2 := startPinger(t, p)
	time.Sleep(300 * time.Millisecond)
	if n := pg2.replies(); n < 10 {
		t.Errorf("client got %d replies from the spare in 300 ms (before the takeover: %d)", n, before)
	}
}

func TestFailoverLineCutNoTakeover(t *testing.T) {
	p := setup(t, netns.Options{})
	startPair(t, p)
	watch := netns.WatchARP(p.Client, netns.ServiceAddr, 20*time.Millisecond, 3*time.Second)
	if err := p.CutLine(p.Main, true); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	for _, n := range []*netns.Node{p.Main, p.Spare} {
		st, err := p.Status(n)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(st.Alarms, "failover-line-down") {
			t.Errorf("%s alarms %v, want failover-line-down", n.Name, st.Alarms)
		}
	}
	if st, _ := p.Status(p.Spare); st.Role != "secondary" || p.HasAddress(p.Spare) {
		t.Fatalf("spare took over on a cut failover line: %+v", st)
	}
	if st, _ := p.Status(p.Main); st.Role != "primary" {
		t.Fatalf("main is %s", st.Role)
	}
	rounds, err := watch.Wait()
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range rounds {
		if len(r) > 1 {
			t.Fatalf("ARP request %d answered by %v: two responders", i, r)
		}
	}
	out, _ := p.Run(p.Spare, "log", "-n", "30")
	if !strings.Contains(out, "failover-line-down") {
		t.Errorf("spare's logbook lacks the alarm:\n%s", out)
	}
	// The line back: the alarm clears.
	p.CutLine(p.Main, false)
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		st, _ := p.Status(p.Spare)
		if !slices.Contains(st.Alarms, "failover-line-down") {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Error("failover-line-down did not clear with the line restored")
}

func TestMainReturnsAutomaticOneResponder(t *testing.T) {
	p := setup(t, netns.Options{Recovery: "automatic", ConnectionWait: time.Second})
	startPair(t, p)
	measurePowerLoss(t, p)
	watch := netns.WatchARP(p.Client, netns.ServiceAddr, 10*time.Millisecond, 6*time.Second)
	p.PowerOn(p.Main)
	if err := p.Start(p.Main); err != nil {
		t.Fatal(err)
	}
	if _, err := p.WaitRole(p.Main, "secondary", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	// After connection-wait-time in sync, the spare hands back.
	if _, err := p.WaitRole(p.Main, "primary", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := p.WaitRole(p.Spare, "secondary", time.Second); err != nil {
		t.Fatal(err)
	}
	rounds, err := watch.Wait()
	if err != nil {
		t.Fatal(err)
	}
	answered := 0
	for i, r := range rounds {
		if len(r) > 1 {
			t.Fatalf("ARP request %d answered by %v: two responders during the handback", i, r)
		}
		answered += len(r)
	}
	if answered < len(rounds)/2 {
		t.Errorf("only %d of %d ARP requests answered", answered, len(rounds))
	}
	st, _ := p.Status(p.Main)
	if st.Epoch != 3 {
		t.Errorf("epoch after handback %d, want 3", st.Epoch)
	}
}

func TestWitnessUnreachableFromMain(t *testing.T) {
	p := setup(t, netns.Options{Witness: netns.WitnessAddr})
	startPair(t, p)
	// The main's LAN 1 port fails: it cannot reach the witness (nor the
	// clients), so it steps down and the spare, which still can, takes over.
	if err := p.CutLAN1(p.Main, true); err != nil {
		t.Fatal(err)
	}
	if _, err := p.WaitRole(p.Main, "secondary", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := p.WaitRole(p.Spare, "primary", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if p.HasAddress(p.Main) {
		t.Error("main kept the address without its witness")
	}
	st, _ := p.Status(p.Main)
	if !slices.Contains(st.Alarms, "witness-unreachable") {
		t.Errorf("main alarms %v", st.Alarms)
	}
	if out, err := netns.Exec(p.Client, "ping", "-c", "1", "-W", "1", netns.ServiceAddr); err != nil {
		t.Errorf("client cannot reach the service address at the spare: %v\n%s", err, out)
	}
}

func TestVirtualMAC(t *testing.T) {
	p := setup(t, netns.Options{VirtualMAC: true})
	startPair(t, p)
	pg := startPinger(t, p)
	time.Sleep(300 * time.Millisecond)
	before := neighMAC(t, p)
	if !strings.HasPrefix(before, "02:50:") {
		t.Fatalf("client's entry %q, want the pair's virtual MAC 02:50:...", before)
	}
	measurePowerLoss(t, p)
	time.Sleep(300 * time.Millisecond)
	if after := neighMAC(t, p); after != before {
		t.Errorf("client's entry changed from %s to %s: the virtual MAC moves with the address", before, after)
	}
	pg.stop()
	if out, err := netns.Exec(p.Client, "ping", "-c", "1", "-W", "1", netns.ServiceAddr); err != nil {
		t.Errorf("client ping after takeover: %v\n%s", err, out)
	}
}

func TestIPv6ServiceAddress(t *testing.T) {
	p := setup(t, netns.Options{Service6: "fd77::10/64"})
	exec.Command("ip", "-n", p.Client, "addr", "add", "fd77::100/64", "dev", "eth1", "nodad").Run()
	startPair(t, p)
	has6 := func(n *netns.Node) bool {
		out, _ := exec.Command("ip", "-n", n.NS, "-6", "addr", "show", "dev", "eth1").CombinedOutput()
		return strings.Contains(string(out), "fd77::10/64")
	}
	if !has6(p.Main) || has6(p.Spare) {
		t.Fatalf("IPv6 service address: main %v spare %v", has6(p.Main), has6(p.Spare))
	}
	if out, err := netns.Exec(p.Client, "ping", "-6", "-c", "1", "-W", "2", "fd77::10"); err != nil {
		t.Fatalf("client ping6 to the main: %v\n%s", err, out)
	}
	measurePowerLoss(t, p)
	if !has6(p.Spare) {
		t.Fatal("spare did not take the IPv6 service address")
	}
	time.Sleep(200 * time.Millisecond)
	spareMAC, _ := netns.MAC(p.Spare.NS, "eth1")
	out, _ := exec.Command("ip", "-n", p.Client, "-6", "neigh", "show", "fd77::10").CombinedOutput()
	if !strings.Contains(string(out), spareMAC) {
		t.Errorf("client's neighbour entry %q, want the spare's %s (unsolicited NA)", out, spareMAC)
	}
	if out, err := netns.Exec(p.Client, "ping", "-6", "-c", "1", "-W", "2", "fd77::10"); err != nil {
		t.Errorf("client ping6 after takeover: %v\n%s", err, out)
	}
}
