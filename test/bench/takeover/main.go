// Command takeover measures how long a spare takes to become primary after
// the main loses power (links down, daemon killed), in network namespaces,
// over many runs. Run as root: go run ./test/bench/takeover -runs 20
package main

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/pairguard/pairguard/test/netns"
)

func main() {
	runs := flag.Int("runs", 20, "power losses per setting")
	flag.Parse()
	if why := netns.Available(); why != "" {
		fmt.Fprintln(os.Stderr, "takeover:", why)
		os.Exit(1)
	}
	dir, err := os.MkdirTemp("", "pg-bench")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer os.RemoveAll(dir)
	bin, err := netns.Build(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("| setting | failover-time | runs | median | min | max |")
	fmt.Println("|---|---|---|---|---|---|")
	for _, s := range []struct {
		name     string
		interval time.Duration
		missed   int
	}{
		{"defaults (100ms x 5)", 0, 0},
		{"20ms x 5", 20 * time.Millisecond, 5},
	} {
		ts, err := measure(dir, bin, s.interval, s.missed, *runs)
		if err != nil {
			fmt.Fprintln(os.Stderr, "takeover:", err)
			os.Exit(1)
		}
		slices.Sort(ts)
		ft := 500 * time.Millisecond
		if s.interval > 0 {
			ft = s.interval * time.Duration(s.missed)
		}
		fmt.Printf("| %s | %v | %d | %v | %v | %v |\n", s.name, ft, len(ts), ts[len(ts)/2].Round(time.Millisecond), ts[0].Round(time.Millisecond), ts[len(ts)-1].Round(time.Millisecond))
	}
}

func measure(dir, bin string, interval time.Duration, missed, runs int) ([]time.Duration, error) {
	sub, err := os.MkdirTemp(dir, "run")
	if err != nil {
		return nil, err
	}
	p, err := netns.Setup(sub, bin)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	o := netns.Options{Interval: interval, Missed: missed, ConnectionWait: time.Second}
	for _, n := range []*netns.Node{p.Main, p.Spare} {
		if err := p.WriteConfig(n, o); err != nil {
			return nil, err
		}
	}
	var ts []time.Duration
	for i := 0; i < runs; i++ {
		// Main first, so it becomes primary; then the spare follows it.
		for _, n := range []*netns.Node{p.Main, p.Spare} {
			if err := p.PowerOn(n); err != nil {
				return nil, err
			}
			if err := p.Start(n); err != nil {
				return nil, err
			}
		}
		if _, err := p.WaitRole(p.Main, "primary", 10*time.Second); err != nil {
			return nil, err
		}
		if _, err := p.WaitRole(p.Spare, "secondary", 10*time.Second); err != nil {
			return nil, err
		}
		time.Sleep(300 * time.Millisecond)
		start := time.Now()
		if err := p.PowerOff(p.Main); err != nil {
			return nil, err
		}
		if _, err := p.WaitRole(p.Spare, "primary", 10*time.Second); err != nil {
			return nil, err
		}
		took := time.Since(start)
		ts = append(ts, took)
		if ft := interval * time.Duration(max(missed, 1)); interval > 0 && took > ft+100*time.Millisecond || interval == 0 && took > 600*time.Millisecond {
			out, _ := p.Run(p.Spare, "log", "-n", "6")
			fmt.Fprintf(os.Stderr, "slow run %d: %v\n%s", i, took, out)
		}
		// Reset: stop the spare, wipe both state dirs' epochs by starting fresh.
		if err := p.PowerOff(p.Spare); err != nil {
			return nil, err
		}
		os.RemoveAll(p.Main.Dir + "/state")
		os.RemoveAll(p.Spare.Dir + "/state")
	}
	return ts, nil
}
