package main

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"
)

// The takeover phase runs its settings side by side: one bed per setting,
// all built first, and the power losses taken in turn (run 1 of every
// setting, then run 2, ...), so that a change of the machine's load touches
// Pairguard and keepalived alike.

// gap is one power loss as the client saw it.
type gap struct {
	cut    time.Duration // power cut to the spare's first reply
	outage time.Duration // the main's last reply to the spare's first
	since  time.Duration // the main's last heartbeat at the spare to the spare's first reply
	garp   time.Duration // the spare's first gratuitous ARP to its first reply (0: not seen)
}

// overhead is what a takeover adds to the detection: the outage minus the
// silence the standby waits for, counted from the main's last heartbeat,
// which left on average half an interval before the cut.
func (s Setting) overhead(outage time.Duration) time.Duration {
	iv := s.Interval
	if iv == 0 {
		iv = 100 * time.Millisecond
	}
	return outage - (s.detectTime() - iv/2)
}

// detectTime is the silence after which the standby takes over.
func (s Setting) detectTime() time.Duration {
	if s.Impl == Keepalived {
		return 3*s.Interval + s.Interval*time.Duration(256-kaSparePrio)/256
	}
	iv, m := s.Interval, s.Missed
	if iv == 0 {
		iv, m = 100*time.Millisecond, 5
	}
	return iv * time.Duration(m)
}

// pick returns the settings whose name contains one of the comma-separated
// words of only (all when only is empty).
func pick(all []Setting, only string) []Setting {
	if only == "" {
		return all
	}
	var out []Setting
	for _, s := range all {
		for w := range strings.SplitSeq(only, ",") {
			if exact, ok := strings.CutPrefix(w, "="); (ok && s.Name == exact) || (!ok && w != "" && strings.Contains(s.Name, w)) {
				out = append(out, s)
				break
			}
		}
	}
	return out
}

func takeoverPhase(dir, bin string, runs int, period time.Duration, only string, out io.Writer) error {
	set := pick(settings, only)
	if len(set) == 0 {
		return fmt.Errorf("no setting matches %q", only)
	}
	type side struct {
		s     Setting
		b     *Bed
		p     *Probe
		gaps  []gap
		fails int
	}
	sides := make([]*side, len(set))
	defer func() {
		for _, sd := range sides {
			if sd == nil {
				continue
			}
			if sd.p != nil {
				sd.p.Close()
			}
			if sd.b != nil {
				sd.b.Close()
			}
		}
	}()
	for i, s := range set {
		b, err := NewBed(dir, bin, s)
		if err != nil {
			return fmt.Errorf("%s: %w", s.Name, err)
		}
		sides[i] = &side{s: s, b: b}
	}
	load0 := loadAvg()
	began := time.Now().UTC()
	for i := 0; i < runs; i++ {
		for _, sd := range sides {
			if stopped() {
				return fmt.Errorf("interrupted")
			}
			// The probe runs only while its bed is measured: the others
			// stay quiet.
			p, err := StartProbe(sd.b.P.Client, period)
			if err != nil {
				return err
			}
			hb, err := StartHBWatch(sd.b.P.Spare.NS)
			if err != nil {
				p.Close()
				return err
			}
			sd.p = p
			g, err := powerLoss(sd.b, p, hb, i)
			p.Close()
			hb.Close()
			sd.p = nil
			if err != nil {
				return fmt.Errorf("%s: %w", sd.s.Name, err)
			}
			sd.gaps = append(sd.gaps, g)
			fmt.Fprintf(os.Stderr, "lan1: %s run %d: cut->reply %v, outage %v, last heartbeat->reply %v, GARP->reply %v\n", sd.s.Name, i,
				g.cut.Round(100*time.Microsecond), g.outage.Round(100*time.Microsecond), g.since.Round(100*time.Microsecond), g.garp.Round(10*time.Microsecond))
		}
	}
	fmt.Fprintf(out, "\nClient-visible outage after power loss of the main, %s to %s UTC, load average %s at the start and %s at the end,\n",
		began.Format("2006-01-02 15:04"), time.Now().UTC().Format("15:04"), load0, loadAvg())
	fmt.Fprintf(out, "%d runs each, settings in turn, echo every %v; outage = the main's last reply to the spare's first;\n", runs, period)
	fmt.Fprintln(out, "overhead (issue's formula) = outage - (detection - interval/2); takeover cost = the spare's first reply - (the main's last")
	fmt.Fprintln(out, "heartbeat arriving at the spare + detection), heartbeats seen on a packet socket in the spare's namespace, split at")
	fmt.Fprintln(out, "the spare's first gratuitous ARP (seen on the same socket) into the spare's part and the client's; median [min, max]:")
	fmt.Fprintln(out)
	fmt.Fprintln(out, "| setting | detection | runs | cut to first reply | outage | overhead (formula) | takeover cost (measured) | of which spare: to GARP | client: GARP to reply |")
	fmt.Fprintln(out, "|---|---|---|---|---|---|---|---|---|")
	for _, sd := range sides {
		var cut, outage, over, cost, spare, client []time.Duration
		for _, g := range sd.gaps {
			cut = append(cut, g.cut)
			outage = append(outage, g.outage)
			over = append(over, sd.s.overhead(g.outage))
			if g.since > 0 {
				cost = append(cost, g.since-sd.s.detectTime())
				if g.garp > 0 {
					spare = append(spare, g.since-g.garp-sd.s.detectTime())
					client = append(client, g.garp)
				}
			}
		}
		fmt.Fprintf(out, "| %s | %s | %d | %s | %s | %s | %s | %s | %s |\n", sd.s.Name, sd.s.detect(), len(sd.gaps), spread(cut), spread(outage), spread(over), spread(cost), spread(spare), spread(client))
	}
	return nil
}

// powerLoss brings the pair up, checks that the client talks to the main,
// cuts the main's power and waits for the spare's first reply.
func powerLoss(b *Bed, probe *Probe, hb *HBWatch, i int) (gap, error) {
	var err error
	for try := 0; try < 3; try++ {
		// A pair that does not form (seen once with keepalived: both
		// BACKUP) is started again, like one the client cannot reach.
		if err = b.Up(); err == nil {
			if _, err = probe.WaitReply(b.MainMAC, time.Now(), 5*time.Second); err == nil {
				break
			}
		}
		fmt.Fprintf(os.Stderr, "lan1: %s run %d, before the cut: %v\n%s", b.S.Name, i, err, b.Describe())
		if err := b.Reset(); err != nil {
			return gap{}, err
		}
	}
	if err != nil {
		return gap{}, fmt.Errorf("run %d, before the cut: %w", i, err)
	}
	time.Sleep(300 * time.Millisecond)
	probe.Trim()
	start := time.Now()
	if err := b.PowerOff(b.P.Main); err != nil {
		return gap{}, err
	}
	at, err := probe.WaitReply(b.SpareMAC, start, 15*time.Second)
	if err != nil {
		return gap{}, fmt.Errorf("run %d, after the cut: %w", i, err)
	}
	last := probe.LastReply(b.MainMAC, at)
	if last.IsZero() {
		last = start
	}
	g := gap{cut: at.Sub(start), outage: at.Sub(last)}
	if h := hb.Last(); !h.IsZero() && h.Before(at) {
		g.since = at.Sub(h)
	}
	if a := hb.GARP(start); !a.IsZero() && a.Before(at) {
		g.garp = at.Sub(a)
	}
	if os.Getenv("PG_LAN1_TRACE") != "" && b.S.Impl == Pairguard {
		log, _ := os.ReadFile(b.P.Spare.LogFile)
		if len(log) > 6000 {
			log = log[len(log)-6000:]
		}
		fmt.Fprintf(os.Stderr, "-- last main reply %s, spare's first %s, main's last heartbeat at the spare %s, spare's first gratuitous ARP %s; spare's log:\n%s\n",
			last.Format("15:04:05.000000"), at.Format("15:04:05.000000"), hb.Last().Format("15:04:05.000000"), hb.GARP(start).Format("15:04:05.000000"), log)
	}
	return g, b.Reset()
}

// LastReply returns the arrival of the last reply from mac before t.
func (p *Probe) LastReply(mac fmt.Stringer, t time.Time) time.Time {
	want := mac.String()
	p.mu.Lock()
	defer p.mu.Unlock()
	var last time.Time
	for _, r := range p.replies {
		if r.mac == want && r.at.Before(t) && r.at.After(last) {
			last = r.at
		}
	}
	return last
}

// spread formats median [min, max].
func spread(ts []time.Duration) string {
	if len(ts) == 0 {
		return "-"
	}
	ts = slices.Clone(ts)
	slices.Sort(ts)
	r := func(d time.Duration) string { return d.Round(100 * time.Microsecond).String() }
	return fmt.Sprintf("%s [%s, %s]", r(ts[len(ts)/2]), r(ts[0]), r(ts[len(ts)-1]))
}

// loadAvg returns the 1-minute load average.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(b))[0]
}
