package daemon

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// realtime puts the calling goroutine on an OS thread of its own that
// runs with SCHED_FIFO at [heartbeat] rt-priority (keepalived's
// vrrp_rt_priority), so that a busy board does not delay the heartbeat
// path: the loop and the failover-line receivers call it. The returned
// function puts the thread back to normal scheduling (at the daemon's nice
// value) and releases it. With rt-priority 0 (the default) it does nothing.
//
// Only these goroutines run real-time: a thread created from a locked one
// comes from the runtime's template thread, which keeps normal
// scheduling, so the mirror's hashing and the hooks never do.
func (d *Daemon) realtime(what string) (undo func()) {
	prio := d.cfg.Heartbeat.RTPriority
	if prio <= 0 {
		return func() {}
	}
	runtime.LockOSThread()
	attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_FIFO, Priority: uint32(prio)}
	if err := unix.SchedSetAttr(0, &attr, 0); err != nil {
		runtime.UnlockOSThread()
		d.rtWarn.Do(func() {
			d.log.Warn("cannot run the heartbeat path real-time; it runs at normal priority", "rt-priority", prio, "err", err)
		})
		return func() {}
	}
	d.log.Debug("real-time scheduling", "thread", what, "tid", unix.Gettid(), "rt-priority", prio)
	return func() {
		nice := 0
		if d.cfg.Nice != nil {
			nice = *d.cfg.Nice
		}
		back := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: 0 /* SCHED_OTHER */, Nice: int32(nice)}
		if unix.SchedSetAttr(0, &back, 0) != nil {
			// Keep the thread locked: the runtime ends it with the
			// goroutine rather than reuse a real-time thread.
			return
		}
		runtime.UnlockOSThread()
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
