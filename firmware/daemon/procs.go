package daemon

import (
	"context"
	"os"
	"runtime"
	"time"
)

// The daemon at rest runs Go code on one processor (GOMAXPROCS 1): the
// heartbeat path then wakes one thread per event. With more processors
// every goroutine made ready (a frame handed to the loop, a timer) starts
// a second thread spinning for work that the first one runs anyway, and
// it goes back to sleep: two more context switches per frame. At 2 ms x 3
// that was 6.4% -> 3.5% of a core per daemon (test/bench/lan1 -phases
// rest, issue 15). Threads blocked in system calls (disk, netlink) do not
// hold the processor, so only CPU-bound Go code is limited by it: a
// periodic mirror round (hashing, TLS) gets all processors while it runs;
// the online mirror, whose write path is always busy, always has them.
// GOMAXPROCS in the environment turns this off.

// procsEvery is how often the processor count is fitted to the mirror.
const procsEvery = time.Second

// procsFor returns the processors the daemon runs Go code on: all of them
// while the mirror transfers, one otherwise.
func procsFor(st MirrorStatus, online bool, all int) int {
	if online || st.State == "syncing" || st.Rate > 0 {
		return all
	}
	return 1
}

// goTuneProcs fits GOMAXPROCS to the mirror every procsEvery, off the loop
// (the mirror's Status may wait for a lock of a round), and puts it back
// when ctx ends.
func (d *Daemon) goTuneProcs(ctx context.Context) {
	all := runtime.GOMAXPROCS(0)
	if os.Getenv("GOMAXPROCS") != "" || all == 1 {
		return
	}
	_, online := d.mirror.(*onlineMirror)
	d.wg.Go(func() {
		t := time.NewTicker(procsEvery)
		defer t.Stop()
		cur := all
		defer func() { runtime.GOMAXPROCS(all) }()
		for {
			if n := procsFor(d.mirror.Status(), online, all); n != cur {
				runtime.GOMAXPROCS(n)
				d.log.Debug("processors for Go code", "gomaxprocs", n)
				cur = n
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
}
