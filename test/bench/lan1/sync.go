package main

import (
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"time"
)

// The sync phase: the daemons' memory during the initial sync of a random
// image (the main's) to a blank one (the spare's) in periodic mode, and
// after it: resident size polled every 100 ms, its peak (VmHWM), and the
// resident size once the round is over.
func syncPhase(dir, bin string, size int64, out io.Writer) error {
	s := Setting{Name: fmt.Sprintf("pairguard defaults, %d MiB datastore", size>>20), Impl: Pairguard, Data: size, SyncEvery: time.Minute}
	b, err := NewBed(dir, bin, s)
	if err != nil {
		return err
	}
	defer b.Close()
	if err := fillRandom(b.P.Main.Image, size); err != nil {
		return err
	}
	load0, began := loadAvg(), time.Now().UTC()
	if err := b.Up(); err != nil {
		return err
	}
	var peak [2]int64
	var pids [2]int
	for j, n := range b.nodes() {
		ps := procsOf(b.daemonPath(n))
		if len(ps) != 1 {
			return fmt.Errorf("daemon of %s: %d processes", n.Name, len(ps))
		}
		pids[j] = ps[0]
	}
	start := time.Now()
	synced := time.Duration(0)
	var states []string
	for time.Since(start) < 5*time.Minute && !stopped() {
		for j := range 2 {
			rss, _, _ := memKiB(pids[j])
			peak[j] = max(peak[j], rss)
		}
		st, err := b.P.Status(b.P.Main)
		if err == nil && (len(states) == 0 || states[len(states)-1] != st.Mirror.State) {
			states = append(states, st.Mirror.State)
		}
		sp, err2 := b.P.Status(b.P.Spare)
		if err == nil && err2 == nil && st.Mirror.State == "in-sync" && sp.Data.State == "up-to-date" && len(states) > 1 {
			synced = time.Since(start)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if synced == 0 {
		return fmt.Errorf("no sync within 5 minutes: mirror states %v", states)
	}
	time.Sleep(20 * time.Second)
	var after, hwm [2]int64
	for j := range 2 {
		after[j], hwm[j], _ = memKiB(pids[j])
	}
	mib := func(k int64) string { return fmt.Sprintf("%.1f MiB", float64(k)/1024) }
	fmt.Fprintf(out, "\nMemory during the initial sync of a random %d MiB image (periodic mode), %s UTC, load average %s at the start and %s at the end;\n",
		size>>20, began.Format("2006-01-02 15:04"), load0, loadAvg())
	fmt.Fprintf(out, "synced after %v (main's mirror states %v); resident size 20 s after the sync:\n\n", synced.Round(100*time.Millisecond), states)
	fmt.Fprintln(out, "| node | peak resident (VmHWM) | peak seen by the 100 ms polls | resident 20 s after |")
	fmt.Fprintln(out, "|---|---|---|---|")
	for j, n := range b.nodes() {
		fmt.Fprintf(out, "| %s | %s | %s | %s |\n", n.Name, mib(hwm[j]), mib(peak[j]), mib(after[j]))
	}
	return nil
}

// fillRandom writes size random bytes to path.
func fillRandom(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(buf)) {
		rand.Read(buf)
		if _, err := f.Write(buf); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}
