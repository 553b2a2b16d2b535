package daemon

import (
	"context"
	"time"
)

// wakeTimer ticks the engine at the moment its next heartbeat falls due or
// the peer's silence reaches the probe point or failover-time
// (engine.NextDue), so that neither waits for the loop's regular tick: a
// quarter-interval tick delays a takeover by up to a quarter interval and
// stretches every heartbeat period by as much.
//
// On Linux it is a timerfd read through the network poller (wake_linux.go):
// the Go runtime then holds no timer for it, and its monitor thread
// (sysmon), which wakes up for every runtime timer that expires while the
// daemon is idle, sleeps through the heartbeats. Elsewhere a time.Timer.
//
// It also goes off for the loop's regular tick (tickFor), which covers the
// engine's other waits: one timer, so that the runtime holds none that
// expires more often than once a second.
type wakeTimer struct {
	c    chan struct{} // a token when the timer went off
	at   time.Duration // engine time the timer is set for (0: stopped)
	tick time.Duration // engine time of the next regular tick
	clock
}

// clock is the timer underneath: set it to go off after d (d > 0), or
// stop it (d == 0).
type clock interface {
	set(d time.Duration) error
	close() error
}

// newWakeTimer starts the timer; it is closed when ctx ends, and wg
// counts its goroutine.
func newWakeTimer(ctx context.Context, d *Daemon) *wakeTimer {
	w := &wakeTimer{c: make(chan struct{}, 1)}
	w.clock = newClock(ctx, d, w.fire)
	return w
}

// fire hands the loop a token (one is enough).
func (w *wakeTimer) fire() {
	select {
	case w.c <- struct{}{}:
	default:
	}
}

// arm sets the timer for the engine's next due time or the next regular
// tick, whichever comes first, if that changed.
func (w *wakeTimer) arm(d *Daemon) {
	if w.tick == 0 {
		w.tick = d.mono() + tickFor(d.cfg.Engine.Interval)
	}
	due := d.eng.NextDue()
	if d.drain != nil {
		// Drain mode: a wake-up for the probe alone mostly finds the
		// frame that ends the silence in the queue (drain.go).
		due = d.eng.NextDueJoin(d.cfg.Engine.ProbeTimeout / 2)
	}
	if due == 0 || w.tick < due {
		due = w.tick
	}
	if due == w.at {
		return
	}
	w.at = due
	if due == 0 {
		_ = w.set(0)
		return
	}
	if err := w.set(max(due-d.mono(), time.Nanosecond)); err != nil {
		d.log.Warn("cannot set the wake-up timer", "err", err)
		w.at = 0
	}
}

// fired is called when the timer's token was taken; the regular tick
// moves on once it is due.
func (w *wakeTimer) fired(d *Daemon) {
	w.at = 0
	if now := d.mono(); now >= w.tick {
		w.tick = now + tickFor(d.cfg.Engine.Interval)
	}
}

// goTimer is the portable clock: a time.Timer.
type goTimer struct{ t *time.Timer }

func newGoTimer(fire func()) *goTimer {
	t := time.AfterFunc(time.Hour, fire)
	t.Stop()
	return &goTimer{t: t}
}

func (g *goTimer) set(d time.Duration) error {
	if d == 0 {
		g.t.Stop()
		return nil
	}
	g.t.Reset(d)
	return nil
}

func (g *goTimer) close() error { g.t.Stop(); return nil }
