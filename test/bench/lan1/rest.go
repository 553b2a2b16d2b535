package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pairguard/pairguard/test/netns"
)

// The rest phase: what each daemon costs a formed pair that has nothing to
// do but its heartbeats, all settings at once over the same window: CPU
// time (user + system, from /proc/PID/stat) as a share of one core, and
// the resident size (VmRSS) and its peak (VmHWM). Keepalived counts both
// its processes (the parent and the VRRP child).

// clkTck is the kernel's USER_HZ, the unit of /proc/PID/stat's times.
const clkTck = 100

// procsOf returns the pids whose command line names path.
func procsOf(path string) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cl, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(cl, []byte(path)) {
			out = append(out, pid)
		}
	}
	return out
}

// cpuTicks returns utime + stime of pid.
func cpuTicks(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s
}

// ctxSwitches returns the context switches (voluntary and not) of all of
// pid's threads: each is a thread going to sleep or being put off the CPU,
// the main cost of a daemon that wakes up a thousand times a second.
func ctxSwitches(pid int) int64 {
	dirs, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	var n int64
	for _, p := range dirs {
		b, _ := os.ReadFile(p)
		for _, l := range strings.Split(string(b), "\n") {
			f := strings.Fields(l)
			if len(f) == 2 && (f[0] == "voluntary_ctxt_switches:" || f[0] == "nonvoluntary_ctxt_switches:") {
				v, _ := strconv.ParseInt(f[1], 10, 64)
				n += v
			}
		}
	}
	return n
}

// memKiB returns VmRSS, VmHWM and RssAnon of pid in KiB.
func memKiB(pid int) (rss, hwm, anon int64) {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = v
		case "VmHWM:":
			hwm = v
		case "RssAnon:":
			anon = v
		}
	}
	return rss, hwm, anon
}

// daemonPath is what the command line of n's daemon names.
func (b *Bed) daemonPath(n *netns.Node) string {
	if b.S.Impl == Keepalived {
		return filepath.Join(n.Dir, "keepalived.conf")
	}
	return n.Config
}

type restResult struct {
	cpu      [2]float64 // share of one core, main and spare
	switches [2]float64 // context switches per second (all threads)
	rss, hwm [2]int64   // KiB
	anon     [2]int64   // KiB of rss that is not file-backed (heap, stacks)
	procs    int
	err      error
}

func restPhase(dir, bin string, window time.Duration, only string, out io.Writer) error {
	set := pick(restSettings, only)
	beds, closeBeds, err := openBeds(dir, bin, set)
	defer closeBeds()
	if err != nil {
		return err
	}
	floorProcs, stopFloors, err := startFloors(set)
	if err != nil {
		return err
	}
	defer stopFloors()
	time.Sleep(5 * time.Second) // past the start
	load0, began := loadAvg(), time.Now().UTC()
	res := make([]restResult, len(beds))
	floors := make([]restResult, len(floorProcs))
	var wg sync.WaitGroup
	for i, fp := range floorProcs {
		p := fp.pid
		wg.Go(func() {
			t0, cs0, start := cpuTicks(p), ctxSwitches(p), time.Now()
			time.Sleep(window)
			el := time.Since(start)
			floors[i].cpu[0] = float64(cpuTicks(p)-t0) / clkTck / el.Seconds()
			floors[i].switches[0] = float64(ctxSwitches(p)-cs0) / el.Seconds()
		})
	}
	for i, b := range beds {
		wg.Go(func() {
			r := &res[i]
			var pids [2][]int
			var t0, cs0 [2]int64
			for j, n := range b.nodes() {
				pids[j] = procsOf(b.daemonPath(n))
				if len(pids[j]) == 0 {
					r.err = fmt.Errorf("no daemon process for %s", n.Name)
					return
				}
				r.procs = len(pids[j])
				for _, p := range pids[j] {
					t0[j] += cpuTicks(p)
					cs0[j] += ctxSwitches(p)
				}
			}
			start := time.Now()
			time.Sleep(window)
			el := time.Since(start)
			for j := range 2 {
				var t1, cs1 int64
				for _, p := range pids[j] {
					t1 += cpuTicks(p)
					cs1 += ctxSwitches(p)
					rss, hwm, anon := memKiB(p)
					r.rss[j] += rss
					r.hwm[j] += hwm
					r.anon[j] += anon
				}
				r.cpu[j] = float64(t1-t0[j]) / clkTck / el.Seconds()
				r.switches[j] = float64(cs1-cs0[j]) / el.Seconds()
			}
		})
	}
	wg.Wait()
	fmt.Fprintf(out, "\nAt rest, a formed pair, %v from %s UTC, all settings at once, load average %s at the start and %s at the end;\n",
		window, began.Format("2006-01-02 15:04"), load0, loadAvg())
	fmt.Fprintln(out, "CPU = user+system time of the daemon's processes / wall time (1 core = 100%); resident size (of it anonymous: heap, stacks) and its peak (VmHWM):")
	fmt.Fprintln(out)
	fmt.Fprintln(out, "| setting | processes per node | CPU main | CPU spare | context switches/s main, spare | RSS main | RSS spare | peak main | peak spare |")
	fmt.Fprintln(out, "|---|---|---|---|---|---|---|---|---|")
	mib := func(k int64) string { return fmt.Sprintf("%.1f MiB", float64(k)/1024) }
	for i, r := range res {
		if r.err != nil {
			fmt.Fprintf(out, "| %s | error: %v | | | | | | | |\n", set[i].Name, r.err)
			continue
		}
		fmt.Fprintf(out, "| %s | %d | %.2f%% | %.2f%% | %.0f, %.0f | %s (%s) | %s (%s) | %s | %s |\n", set[i].Name, r.procs,
			100*r.cpu[0], 100*r.cpu[1], r.switches[0], r.switches[1], mib(r.rss[0]), mib(r.anon[0]), mib(r.rss[1]), mib(r.anon[1]), mib(r.hwm[0]), mib(r.hwm[1]))
	}
	for i, f := range floors {
		fmt.Fprintln(out, floorRow(floorProcs[i], f.cpu[0], f.switches[0]))
	}
	return nil
}

// openBeds opens and brings up a bed per setting; closeAll closes every bed
// opened, also when err says one failed (closeAll is never nil).
func openBeds(dir, bin string, set []Setting) (beds []*Bed, closeAll func(), err error) {
	closeAll = func() {
		for _, b := range beds {
			b.Close()
		}
	}
	for _, s := range set {
		b, err := NewBed(dir, bin, s)
		if err != nil {
			return beds, closeAll, fmt.Errorf("%s: %w", s.Name, err)
		}
		beds = append(beds, b)
		if err := upRetry(b); err != nil {
			return beds, closeAll, fmt.Errorf("%s: %w", s.Name, err)
		}
	}
	return beds, closeAll, nil
}

// upRetry brings b's pair up, starting it again (three times at most) when
// it does not form: seen with keepalived, both nodes BACKUP.
func upRetry(b *Bed) error {
	var err error
	for try := 0; try < 3; try++ {
		if err = b.Up(); err == nil {
			return nil
		}
		fmt.Fprintf(os.Stderr, "lan1: %s: %v; starting it again\n", b.S.Name, err)
		b.Reset()
	}
	return err
}
