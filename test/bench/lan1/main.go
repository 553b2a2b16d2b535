// Command lan1 compares Pairguard with keepalived (VRRPv3) on LAN 1, in
// network namespaces (issue 4, item 7):
//
//   - takeover: the gap a LAN 1 client sees when the main loses power, from the
//     power cut (and from the main's last echo reply) to the first echo reply
//     from the new primary, and the takeover's own cost from the main's last
//     heartbeat at the spare;
//   - load: false takeovers in -load (default 10m) with both cores busy and 1%
//     loss on each pair's heartbeat path, all settings at once;
//   - arp: with the failover line cut (LAN 1 intact), how many MACs answer ARP
//     for the service address;
//   - rest: CPU and resident size of formed pairs at rest, all settings at once;
//   - sync: the daemons' memory during the initial sync of a random 512 MiB
//     datastore image and after it (issue 15).
//
// The takeover phase runs its settings in turn, run by run (outage.go), with
// the client's echo every -period (1 ms); -settings picks settings by name.
//
// Run as root: go run ./test/bench/lan1 -runs 20 -load 10m
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pairguard/pairguard/test/netns"
)

func main() {
	if iv, err := time.ParseDuration(os.Getenv(goFloorEnv)); err == nil {
		goFloor(iv)
		return
	}
	runs := flag.Int("runs", 20, "power losses per setting")
	load := flag.Duration("load", 10*time.Minute, "duration of the load test")
	phases := flag.String("phases", "takeover,load,arp", "phases to run (comma separated)")
	period := flag.Duration("period", time.Millisecond, "takeover phase: the client's echo period")
	window := flag.Duration("window", 30*time.Second, "rest phase: the measuring window")
	only := flag.String("settings", "", "takeover, load and rest phases: only the settings whose name contains one of these comma-separated words (=name: exactly that name)")
	flag.Parse()
	// SIGINT or SIGTERM end the phase in progress early, so that every
	// namespace, nft table and process is still removed.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() { <-sigs; close(stopping) }()
	if err := run(*runs, *load, *period, *window, *only, strings.Split(*phases, ","), os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "lan1:", err)
		os.Exit(1)
	}
}

// stopping is closed on SIGINT or SIGTERM.
var stopping = make(chan struct{})

func stopped() bool {
	select {
	case <-stopping:
		return true
	default:
		return false
	}
}

// settings are compared side by side: keepalived's master-down interval is
// 3 x advert_int + skew, so pairguard runs with missed = 3 at the same
// interval. advert_int 1s is keepalived's default.
var settings = []Setting{
	{Name: "pairguard defaults (100ms x 5)", Impl: Pairguard},
	{Name: "keepalived advert_int 1s (default)", Impl: Keepalived, Interval: time.Second},
	{Name: "pairguard 20ms x 3", Impl: Pairguard, Interval: 20 * time.Millisecond, Missed: 3},
	{Name: "keepalived advert_int 20ms", Impl: Keepalived, Interval: 20 * time.Millisecond},
	{Name: "pairguard 10ms x 3", Impl: Pairguard, Interval: 10 * time.Millisecond, Missed: 3},
	{Name: "keepalived advert_int 10ms", Impl: Keepalived, Interval: 10 * time.Millisecond},
	{Name: "pairguard 5ms x 3", Impl: Pairguard, Interval: 5 * time.Millisecond, Missed: 3},
	{Name: "pairguard 2ms x 3", Impl: Pairguard, Interval: 2 * time.Millisecond, Missed: 3},
	{Name: "pairguard 2ms x 3, rt-priority 10", Impl: Pairguard, Interval: 2 * time.Millisecond, Missed: 3, HB: rtKeys},
}

// rtKeys run the heartbeat path real-time with locked memory.
const rtKeys = "rt-priority = 10\nlock-memory = true\n"

// restSettings add the real-time keys at 10 ms, to see their cost.
var restSettings = append(slices.Clone(settings),
	Setting{Name: "pairguard 10ms x 3, rt-priority 10", Impl: Pairguard, Interval: 10 * time.Millisecond, Missed: 3, HB: rtKeys},
)

// loadSettings adds keepalived at pairguard's scheduling priority: the
// daemon runs at nice -10 by default, keepalived's VRRP process at 0 unless
// vrrp_priority says otherwise. Under full CPU load that matters.
var loadSettings = append(slices.Clone(settings),
	Setting{Name: "keepalived advert_int 20ms, vrrp_priority -10", Impl: Keepalived, Interval: 20 * time.Millisecond, Nice: -10},
	Setting{Name: "keepalived advert_int 10ms, vrrp_priority -10", Impl: Keepalived, Interval: 10 * time.Millisecond, Nice: -10},
)

func run(runs int, load, period, window time.Duration, only string, phases []string, out io.Writer) error {
	if why := netns.Available(); why != "" {
		return fmt.Errorf("%s", why)
	}
	if _, err := exec.LookPath("keepalived"); err != nil {
		return fmt.Errorf("keepalived is not installed (apt-get install -y keepalived nftables stress-ng)")
	}
	dir, err := os.MkdirTemp("", "pg-lan1")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin, err := netns.Build(dir)
	if err != nil {
		return err
	}
	for _, ph := range phases {
		switch ph {
		case "takeover":
			err = takeoverPhase(dir, bin, runs, period, only, out)
		case "load":
			err = loadPhase(dir, bin, load, only, out)
		case "arp":
			err = arpPhase(dir, bin, out)
		case "rest":
			err = restPhase(dir, bin, window, only, out)
		case "sync":
			err = syncPhase(dir, bin, 512<<20, out)
		case "flaplog":
			err = flapLog(dir, bin, out)
		default:
			err = fmt.Errorf("unknown phase %q", ph)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// loadResult is what one bed saw during the load test.
type loadResult struct {
	S          Setting
	Takeovers  int      // the spare became primary while the main was alive
	MainLosses int      // the main stopped serving
	Both       int      // polls that saw both serving
	Notes      []string // logbook or keepalived state changes
	Err        error
}

func loadPhase(dir, bin string, d time.Duration, only string, out io.Writer) error {
	loadSettings := pick(loadSettings, only)
	beds, closeBeds, err := openBeds(dir, bin, loadSettings)
	defer closeBeds()
	if err != nil {
		return err
	}
	for _, b := range beds {
		if err := addLoss(b); err != nil {
			return fmt.Errorf("%s: %w", b.S.Name, err)
		}
	}
	stress := exec.Command("stress-ng", "--cpu", "2", "--timeout", fmt.Sprintf("%ds", int((d+5*time.Second).Seconds())), "--quiet")
	stress.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := stress.Start(); err != nil {
		return fmt.Errorf("stress-ng: %w", err)
	}
	defer func() {
		syscall.Kill(-stress.Process.Pid, syscall.SIGKILL)
		stress.Wait()
	}()
	began := time.Now()
	res := make([]loadResult, len(beds))
	var wg sync.WaitGroup
	for i, b := range beds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i] = watch(b, began, d)
		}()
	}
	wg.Wait()
	fmt.Fprintf(out, "\nFalse takeovers in %v from %s UTC, both cores busy (stress-ng --cpu 2), 1%% ingress loss on the heartbeat path, load average %s at the end:\n\n",
		d, began.UTC().Format("2006-01-02 15:04"), loadAvg())
	fmt.Fprintln(out, "| setting | detection | false takeovers | main lost the role | both primary (polls) | dropped by the loss rule |")
	fmt.Fprintln(out, "|---|---|---|---|---|---|")
	for i, r := range res {
		if r.Err != nil {
			fmt.Fprintf(out, "| %s | %s | error: %v | | | |\n", r.S.Name, r.S.detect(), r.Err)
			continue
		}
		fmt.Fprintf(out, "| %s | %s | %d | %d | %d | %s |\n", r.S.Name, r.S.detect(), r.Takeovers, r.MainLosses, r.Both, lossCounters(beds[i]))
	}
	for _, r := range res {
		for _, n := range r.Notes {
			fmt.Fprintf(out, "\n%s: %s", r.S.Name, n)
		}
	}
	fmt.Fprintln(out)
	return nil
}

// addLoss drops 1% of the frames arriving on each node's heartbeat path:
// all of LAN 2 (eth2, raw 0x88B5 frames included) for pairguard; for
// keepalived, whose adverts travel on LAN 1, also 1% of the VRRP packets
// arriving on eth1. An nftables netdev ingress rule, since there is no netem.
func addLoss(b *Bed) error {
	for _, n := range b.nodes() {
		rules := "table netdev pgloss {\n\tchain lan2 { type filter hook ingress device \"eth2\" priority -500; numgen random mod 100 < 1 counter drop; }\n"
		if b.S.Impl == Keepalived {
			rules += "\tchain vrrp { type filter hook ingress device \"eth1\" priority -500; meta protocol ip ip protocol vrrp numgen random mod 100 < 1 counter drop; }\n"
		}
		rules += "}\n"
		cmd := exec.Command("ip", "netns", "exec", n.NS, "nft", "-f", "-")
		cmd.Stdin = strings.NewReader(rules)
		if o, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("nft in %s: %v: %s", n.NS, err, o)
		}
	}
	return nil
}

// lossCounters sums the packets the loss rules dropped on both nodes.
func lossCounters(b *Bed) string {
	var parts []string
	for _, n := range b.nodes() {
		o, _ := exec.Command("ip", "netns", "exec", n.NS, "nft", "list", "table", "netdev", "pgloss").CombinedOutput()
		var pk []string
		for _, l := range strings.Split(string(o), "\n") {
			if i := strings.Index(l, "packets "); i >= 0 {
				pk = append(pk, strings.Fields(l[i:])[1])
			}
		}
		parts = append(parts, n.Name+" "+strings.Join(pk, "+"))
	}
	return strings.Join(parts, ", ")
}

// watch polls a bed every 50 ms for d and counts the spare's rises to
// primary while the main was alive; at the end it reads the logbooks (or
// keepalived's recorded states) for changes the polls may have missed.
func watch(b *Bed, began time.Time, d time.Duration) loadResult {
	r := loadResult{S: b.S}
	// Only what happens from now on counts (not the start of the pair).
	skipBook, skipStates := len(b.Logbook(b.P.Spare)), len(b.kaStates(b.P.Spare))
	spareWas, mainWas := false, true
	for time.Since(began) < d && !stopped() {
		sp, err1 := b.IsPrimary(b.P.Spare)
		mp, err2 := b.IsPrimary(b.P.Main)
		if err1 == nil && err2 == nil {
			if sp && !spareWas && b.Alive(b.P.Main) {
				r.Takeovers++
				r.Notes = append(r.Notes, fmt.Sprintf("spare became primary at +%v", time.Since(began).Round(time.Millisecond)))
			}
			if !mp && mainWas {
				r.MainLosses++
			}
			if sp && mp {
				r.Both++
			}
			spareWas, mainWas = sp, mp
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !b.Alive(b.P.Main) || !b.Alive(b.P.Spare) {
		r.Err = fmt.Errorf("a daemon died during the load test (see %s)", b.P.Dir)
	}
	// What the polls cannot see: short flaps.
	if b.S.Impl == Pairguard {
		kinds := map[string]int{}
		msgs := map[string]int{}
		spPrimary := 0
		for _, e := range b.Logbook(b.P.Spare)[skipBook:] {
			k, _ := e["kind"].(string)
			kinds[k]++
			if k == "alarm" || k == "peer-down" || k == "takeover" {
				m, _ := e["message"].(string)
				msgs[k+": "+m]++
			}
			if role, _ := e["role"].(string); role == "primary" {
				spPrimary++
			}
		}
		r.Notes = append(r.Notes, fmt.Sprintf("spare logbook during the test: kinds %v, entries with role primary %d", kinds, spPrimary))
		for m, c := range msgs {
			r.Notes = append(r.Notes, fmt.Sprintf("spare logbook %dx %q", c, m))
		}
		if spPrimary > r.Takeovers {
			r.Takeovers = spPrimary
		}
	} else {
		masters := 0
		states := b.kaStates(b.P.Spare)[skipStates:]
		for _, st := range states {
			if st == "MASTER" {
				masters++
			}
		}
		r.Notes = append(r.Notes, fmt.Sprintf("spare keepalived states during the test %v", states))
		if masters > r.Takeovers {
			r.Takeovers = masters
		}
	}
	return r
}

func arpPhase(dir, bin string, out io.Writer) error {
	fmt.Fprintln(out, "\nFailover line cut (the main's LAN 2 port at the switch), LAN 1 intact: ARP responders for the service address")
	fmt.Fprintln(out, "seen by the client (a request every 100 ms from the cut until 2 s after failover-time x 4):")
	fmt.Fprintln(out)
	fmt.Fprintln(out, "| setting | MACs answering (answers to requests, gratuitous) | spare at the end | main at the end |")
	fmt.Fprintln(out, "|---|---|---|---|")
	for _, s := range []Setting{
		settings[0], settings[2], settings[4],
		{Name: "pairguard 20ms x 3, on-line-loss = takeover (control)", Impl: Pairguard, Interval: 20 * time.Millisecond, Missed: 3, Extra: ""},
	} {
		b, err := NewBed(dir, bin, s)
		if err != nil {
			return err
		}
		if strings.Contains(s.Name, "takeover") {
			for _, n := range b.nodes() {
				if err := b.P.WriteConfig(n, netns.Options{Interval: s.Interval, Missed: s.Missed, ConnectionWait: time.Second, OnLineLoss: "takeover"}); err != nil {
					b.Close()
					return err
				}
			}
		}
		line, err := cutLine(b)
		b.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", s.Name, err)
		}
		fmt.Fprintf(out, "| %s | %s |\n", s.Name, line)
	}
	return nil
}

func cutLine(b *Bed) (string, error) {
	if err := b.Up(); err != nil {
		return "", err
	}
	ft := 500 * time.Millisecond
	if b.S.Interval > 0 {
		ft = b.S.Interval * time.Duration(b.S.Missed)
	}
	if err := b.P.CutLine(b.P.Main, true); err != nil {
		return "", err
	}
	got, err := arpResponders(b.P.Client, 4*ft+2*time.Second)
	if err != nil {
		return "", err
	}
	sp, _ := b.P.Status(b.P.Spare)
	mp, _ := b.P.Status(b.P.Main)
	name := map[string]string{b.MainMAC.String(): "main", b.SpareMAC.String(): "spare"}
	macs := map[string]bool{}
	var parts []string
	for k, n := range got {
		mac, kind, _ := strings.Cut(k, " ")
		macs[mac] = true
		parts = append(parts, fmt.Sprintf("%s %d %s", name[mac], n, kind))
	}
	slices.Sort(parts)
	verdict := "one"
	if len(macs) != 1 {
		verdict = fmt.Sprintf("**%d**", len(macs))
	}
	demotes := 0
	for _, e := range b.Logbook(b.P.Main) {
		if e["kind"] == "demote" {
			demotes++
		}
	}
	return fmt.Sprintf("%s (%s) | %s, epoch %d %v | %s, epoch %d, %d demotions in its logbook", verdict, strings.Join(parts, ", "),
		sp.Role, sp.Epoch, sp.Alarms, mp.Role, mp.Epoch, demotes), nil
}

// flapLog runs the cut-line control (on-line-loss = takeover, LAN 1 intact)
// for one second and prints both logbooks and daemon logs, for a bug report.
func flapLog(dir, bin string, out io.Writer) error {
	s := Setting{Name: "control", Impl: Pairguard, Interval: 20 * time.Millisecond, Missed: 3}
	b, err := NewBed(dir, bin, s)
	if err != nil {
		return err
	}
	defer b.Close()
	for _, n := range b.nodes() {
		if err := b.P.WriteConfig(n, netns.Options{Interval: s.Interval, Missed: s.Missed, ConnectionWait: time.Second, OnLineLoss: "takeover"}); err != nil {
			return err
		}
	}
	if err := b.Up(); err != nil {
		return err
	}
	cut := time.Now()
	if err := b.P.CutLine(b.P.Main, true); err != nil {
		return err
	}
	time.Sleep(time.Second)
	fmt.Fprintf(out, "line cut at %s\n", cut.Format("15:04:05.000"))
	for _, n := range b.nodes() {
		cfg, _ := os.ReadFile(n.Config)
		fmt.Fprintf(out, "\n== %s config\n%s\n== %s logbook\n", n.Name, cfg, n.Name)
		for _, e := range b.Logbook(n) {
			fmt.Fprintln(out, e)
		}
		log, _ := os.ReadFile(n.LogFile)
		fmt.Fprintf(out, "\n== %s daemon log\n%s\n", n.Name, log)
	}
	return nil
}
