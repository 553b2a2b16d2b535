package engine

import "time"

// NextDue returns the engine time at which a Tick next has work that a
// coarse tick would delay: a heartbeat falls due, or the peer's silence
// reaches the point where the ARP probe starts or failover-time is up, or
// a primary's arbiter lease nears its end (the release margin). It
// returns 0 when nothing of the kind is pending. The daemon arms one timer
// for it, so that heartbeats leave and a dead peer is noticed on time
// rather than at the next quarter-interval tick; its regular tick still
// covers every other wait.
func (e *Engine) NextDue() time.Duration { return e.NextDueJoin(0) }

// NextDueJoin is NextDue for a caller that would rather start the ARP
// probe up to join late than wake up for it alone: a probe start due that
// much or less before the next heartbeat waits for it. The daemon in drain
// mode (it sees the frames that arrived meanwhile only when it wakes up)
// passes a part of probe-time, out of the probe's lead of 2 x probe-time;
// failover-time and the heartbeats are never late.
func (e *Engine) NextDueJoin(join time.Duration) time.Duration {
	var due time.Duration
	at := func(t time.Duration) {
		if t > e.now && (due == 0 || t < due) {
			due = t
		}
	}
	if e.role == RoleStandalone {
		return 0
	}
	at(e.nextLAN2)
	at(e.nextLAN1)
	silentSince := e.roleSince
	if e.everLAN2 && e.heardLAN2 > silentSince {
		silentSince = e.heardLAN2
	}
	if e.everLAN1 && e.heardLAN1 > silentSince {
		silentSince = e.heardLAN1
	}
	at(silentSince + e.cfg.FailoverTime)
	// The failover line alone falls silent (failover-line-down, and a
	// takeover with on-line-loss = "takeover"): not a tick later either.
	if e.everLAN2 {
		at(e.heardLAN2 + e.cfg.FailoverTime)
	} else {
		at(e.roleSince + e.cfg.FailoverTime)
	}
	if e.role == RoleSecondary {
		probe := silentSince + e.cfg.FailoverTime - 2*e.cfg.ProbeTimeout
		if send := min(e.nextLAN2, e.nextLAN1); probe < send && send-probe <= join {
			probe = send
		}
		at(probe)
	}
	if e.role == RolePrimary && e.cfg.Arbiter.Enabled && e.lease.until > 0 {
		// A primary without its peer steps down the release margin
		// before its lease ends.
		at(e.lease.until - e.cfg.Arbiter.ReleaseMargin)
	}
	return due
}
