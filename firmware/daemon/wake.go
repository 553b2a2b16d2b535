package daemon

import "time"

// wakeTimer ticks the engine at the moment its next heartbeat falls due or
// the peer's silence reaches the probe point or failover-time
// (engine.NextDue), so that neither waits for the loop's regular tick: a
// quarter-interval tick delays a takeover by up to a quarter interval and
// stretches every heartbeat period by as much.
type wakeTimer struct {
	t  *time.Timer
	at time.Duration // engine time the timer is set for (0: stopped)
}

func newWakeTimer() *wakeTimer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &wakeTimer{t: t}
}

// arm sets the timer for the engine's next due time, if it changed.
func (w *wakeTimer) arm(d *Daemon) {
	due := d.eng.NextDue()
	if due == w.at {
		return
	}
	w.at = due
	if due == 0 {
		w.t.Stop()
		return
	}
	w.t.Reset(max(due-d.mono(), 0))
}

// fired is called when the timer's value was taken.
func (w *wakeTimer) fired() { w.at = 0 }
