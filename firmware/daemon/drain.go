package daemon

import (
	"cmp"
	"context"
	"errors"
	"net"
	"slices"
	"time"

	"github.com/pairguard/pairguard/drivers/rawether"
	"github.com/pairguard/pairguard/firmware/engine"
	"github.com/pairguard/pairguard/firmware/frame"
)

// Drain mode: at heartbeat intervals up to drainMax, no thread waits on
// the failover-line sockets. Open opens them outside the Go runtime's
// poller (rawether.ListenQuiet), so a frame arriving wakes nobody; the
// loop takes the queued frames whenever it wakes up anyway (to send a
// heartbeat, at the peer's failover-time, at its regular tick), before it
// ticks the engine, and before it hands the engine any other event (a
// probe's result, a command): the engine never judges the peer's silence
// without the frames already queued. Each frame counts from the time the kernel received
// it, so the peer's silence, and so a takeover, is timed as before: the
// wake timer is armed for the failover-time counted from the frames
// taken so far, and the frames that came in meanwhile are taken first.
//
// The cost: what a frame makes the node do (answer a new peer at once,
// take over on a RELEASE, step down before a primary of a higher epoch)
// waits until the next wake-up, at most one heartbeat interval (2 ms at
// 2 ms x 3). The gain: one wake-up per interval instead of two or three
// (issue 15's heartbeat CPU at 2 ms, test/bench/README.md). The decoding
// (HMAC, replay window) runs on the loop; a flood is bounded by the
// socket's queue and by drainBatch per path and wake-up.
const (
	drainMax   = 5 * time.Millisecond
	drainBatch = 256
)

// drainPath is one socket of drain mode.
type drainPath struct {
	c        rawether.Drainer
	path     engine.Path
	buf      []byte
	software string // the peer's software of the last frame (see decode)
	link     linkWatch
	next     time.Time // the next interface check
}

// drainer is the state of drain mode (nil: receive goroutines).
type drainer struct {
	paths   []*drainPath
	pending []pendingFrame // the frames of one drain, in arrival order
}

type pendingFrame struct {
	r  received
	at time.Duration // engine time of the frame's arrival
}

// useDrain reports whether the failover-line sockets are drained by the
// loop: a short interval, and sockets that no thread waits on.
func useDrain(interval time.Duration, conns ...rawether.Conn) bool {
	if interval > drainMax {
		return false
	}
	some := false
	for _, c := range conns {
		if c == nil {
			continue
		}
		if _, ok := c.(rawether.Drainer); !ok {
			return false
		}
		some = true
	}
	return some
}

// startDrain sets up drain mode for the failover-line sockets.
func (d *Daemon) startDrain(ctx context.Context) {
	dr := &drainer{pending: make([]pendingFrame, 0, 2*drainBatch)}
	for _, p := range []struct {
		c    rawether.Conn
		path engine.Path
	}{{d.deps.LAN2, engine.PathLAN2}, {d.deps.LAN1, engine.PathLAN1}} {
		if p.c == nil {
			continue
		}
		c := p.c.(rawether.Drainer)
		dr.paths = append(dr.paths, &drainPath{
			c: c, path: p.path,
			buf:  make([]byte, max(frame.MaxLen, frame.PairMaxLen)),
			link: linkWatch{d: d, c: c, path: p.path, persist: d.cfg.Engine.ConnectionWait},
		})
		d.wg.Go(func() { <-ctx.Done(); c.Close() })
	}
	d.drain = dr
}

// drainFrames takes the frames queued on the failover-line sockets and
// feeds them to the engine in arrival order, each at its arrival time.
func (d *Daemon) drainFrames() {
	dr := d.drain
	if dr == nil {
		return
	}
	wall, mono := time.Now(), d.mono()
	// Never before the engine's time (it only goes forward); never after
	// now (a wall clock stepped back).
	floor := d.eng.Now()
	dr.pending = dr.pending[:0]
	for _, p := range dr.paths {
		if !wall.Before(p.next) {
			p.next = wall.Add(refreshEvery)
			if rep := p.link.check(wall); rep != nil {
				d.receive(received{path: p.path, link: rep})
			}
		}
	take:
		for range drainBatch {
			n, src, at, err := p.c.RecvNow(p.buf)
			switch {
			case err == nil:
			case errors.Is(err, rawether.ErrNoFrame):
				break take
			case errors.Is(err, rawether.ErrTruncated):
				d.frames.Record(frame.ErrMalformed)
				continue
			case errors.Is(err, rawether.ErrLinkDown):
				if soon := wall.Add(refreshEvery / 10); soon.Before(p.next) {
					p.next = soon
				}
				break take
			case errors.Is(err, net.ErrClosed):
				return
			default:
				d.log.Warn("receive failed", "path", p.path, "err", err)
				break take
			}
			r, forLoop := d.decode(p.path, p.buf[:n], src, &p.software)
			if !forLoop {
				continue
			}
			dr.pending = append(dr.pending, pendingFrame{r: r, at: arrival(at, wall, mono, floor)})
		}
	}
	slices.SortStableFunc(dr.pending, func(a, b pendingFrame) int { return cmp.Compare(a.at, b.at) })
	for i := range dr.pending {
		d.receiveAt(dr.pending[i].r, dr.pending[i].at)
		dr.pending[i] = pendingFrame{} // drop the references
	}
}

// arrival converts a frame's arrival on the wall clock to engine time: as
// long before mono as at is before wall, but not before floor nor after
// mono.
func arrival(at, wall time.Time, mono, floor time.Duration) time.Duration {
	age := max(wall.Sub(at), 0)
	return min(max(mono-age, floor), mono)
}
