package daemon

import (
	"context"
	"os"
	"runtime"
	"syscall"
	"time"
	"unsafe"
)

// The daemon at rest runs Go code on one processor (GOMAXPROCS 1): the
// heartbeat path then wakes one thread per event. With more processors
// every goroutine made ready (a frame handed to the loop, a timer) starts
// a second thread spinning for work that the first one runs anyway, and
// it goes back to sleep: two more context switches per frame. At 2 ms x 3
// that was 6.4% -> 3.5% of a core per daemon (test/bench/lan1 -phases
// rest, issue 15). Threads blocked in system calls (disk, netlink) do not
// hold the processor, so only CPU-bound Go code is limited by it, and
// while such code runs on the one processor the loop waits for it to be
// preempted (10 ms and more): so all processors are back as soon as the
// daemon's CPU time passes a quarter of a core (a verify, the start of a
// round, a burst of commands), while a periodic mirror round runs, and
// always with the online mirror, whose write path is always busy; one
// processor again after a second of quiet. GOMAXPROCS in the environment
// turns this off.

const (
	// procsEvery is how often the processor count is fitted.
	procsEvery = 200 * time.Millisecond
	// procsBusy is the share of one core above which the daemon is busy.
	procsBusy = 0.25
	// procsQuiet is how many quiet periods in a row bring one processor back.
	procsQuiet = 5
	// rtEvery is how often the threads are set real-time again while quiet.
	rtEvery = 5 * time.Second
)

// procsFor returns the processors the daemon runs Go code on: all of them
// while the mirror transfers or the daemon is busy (cpu: its CPU time over
// the last period, in cores), one otherwise.
func procsFor(st MirrorStatus, online bool, cpu float64, all int) int {
	if online || st.State == "syncing" || st.Rate > 0 || cpu > procsBusy {
		return all
	}
	return 1
}

// procsTuner holds the state of the fitting between two periods.
type procsTuner struct {
	all, cur int
	quiet    int
	lastCPU  time.Duration
	lastAt   time.Time
}

// next returns the processor count for this period: all at once, one only
// after procsQuiet quiet periods in a row.
func (p *procsTuner) next(want int) int {
	if want > 1 {
		p.quiet = 0
		return want
	}
	if p.cur == 1 {
		return 1
	}
	p.quiet++
	if p.quiet >= procsQuiet {
		return 1
	}
	return p.cur
}

// cpuTime returns the process's CPU time (user and system). A raw system
// call: getrusage never blocks, and one the scheduler sees would wake its
// monitor thread five times a second.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if _, _, e := syscall.RawSyscall(syscall.SYS_GETRUSAGE, 0 /* RUSAGE_SELF */, uintptr(unsafe.Pointer(&ru)), 0); e != 0 {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// goTuneProcs fits GOMAXPROCS every procsEvery, off the loop (the mirror's
// Status may wait for a lock of a round), and puts it back when ctx ends.
//
// With [heartbeat] rt-priority the same verdict makes every thread
// real-time while quiet and normal while busy (rt_linux.go); the threads
// are set again every rtEvery for those the runtime started since.
func (d *Daemon) goTuneProcs(ctx context.Context) {
	all := runtime.GOMAXPROCS(0)
	tune := os.Getenv("GOMAXPROCS") == "" && all > 1
	rt := d.cfg.Heartbeat.RTPriority > 0
	if !tune && !rt {
		return
	}
	_, online := d.mirror.(*onlineMirror)
	d.wg.Go(func() {
		t := time.NewTicker(procsEvery)
		defer t.Stop()
		// Busy at the start: real-time once quiet.
		p := &procsTuner{all: max(all, 2), cur: max(all, 2), lastCPU: cpuTime(), lastAt: time.Now()}
		defer func() {
			if tune {
				runtime.GOMAXPROCS(all)
			}
			d.threadsRealtime(false)
		}()
		var sinceRT time.Duration
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			now, c := time.Now(), cpuTime()
			cpu := float64(c-p.lastCPU) / float64(now.Sub(p.lastAt))
			p.lastCPU, p.lastAt = c, now
			n := p.next(procsFor(d.mirror.Status(), online, cpu, p.all))
			if n != p.cur {
				if tune {
					runtime.GOMAXPROCS(min(n, all))
				}
				d.log.Debug("processors for Go code", "gomaxprocs", min(n, all), "cpu", cpu, "real-time", rt && n == 1)
				p.cur = n
				d.threadsRealtime(n == 1)
				sinceRT = 0
			} else if sinceRT += procsEvery; rt && n == 1 && sinceRT >= rtEvery {
				d.threadsRealtime(true)
				sinceRT = 0
			}
		}
	})
}
