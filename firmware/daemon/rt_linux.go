package daemon

import (
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// threadsRealtime puts every thread of the daemon on SCHED_FIFO at
// [heartbeat] rt-priority (keepalived's vrrp_rt_priority), or back to
// normal scheduling at the daemon's nice value, so that a busy board does
// not delay the heartbeat path. The tuner (procs.go) calls it: real-time
// while the daemon is quiet, when it runs Go code on one processor and
// that code is the heartbeat path; normal while the mirror transfers or
// the daemon is busy, so that hashing and TLS never run real-time. Threads
// the runtime starts later are caught at the tuner's next pass.
//
// All threads, not a few locked ones: the thread the kernel wakes for a
// frame is whichever one waits in the Go poller, and with goroutines
// locked to real-time threads every frame went from the poller's thread
// (not real-time) to the receiver's and on to the loop's, 6,000-7,000
// context switches a second at 2 ms against 1,200 (issue 15).
//
// SCHED_RESET_ON_FORK keeps the hooks and checks, which the daemon starts
// as child processes, off real-time. With rt-priority 0 (the default) it
// does nothing.
func (d *Daemon) threadsRealtime(on bool) {
	prio := d.cfg.Heartbeat.RTPriority
	if prio <= 0 {
		return
	}
	attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_FIFO, Priority: uint32(prio), Flags: unix.SCHED_FLAG_RESET_ON_FORK}
	if !on {
		nice := 0
		if d.cfg.Nice != nil {
			nice = *d.cfg.Nice
		}
		attr = unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: 0 /* SCHED_OTHER */, Nice: int32(nice)}
	}
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		d.log.Warn("cannot list the daemon's threads", "err", err)
		return
	}
	for _, e := range ents {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetAttr(tid, &attr, 0); err != nil && on {
			d.rtWarn.Do(func() {
				d.log.Warn("cannot run the heartbeat path real-time; it runs at normal priority", "rt-priority", prio, "err", err)
			})
			return
		}
	}
}

// schedPolicy returns the scheduling policy and priority of thread tid
// (for tests).
func schedPolicy(tid int) (policy, prio uint32, err error) {
	a, err := unix.SchedGetAttr(tid, 0)
	if err != nil {
		return 0, 0, err
	}
	return a.Policy, a.Priority, nil
}
