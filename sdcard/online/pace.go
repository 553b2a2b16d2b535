package online

import "time"

// The resync's throttle while the peer is behind with pull-ahead (DRBD's
// c-min-rate): while the application writes heavily, the resync sends only
// at a small minimum rate, and at full speed (the line's, within the
// resync's 8 MiB in flight) once the application is quiet or slow. DRBD
// throttles a resync to c-min-rate whenever it sees application I/O on
// the device (its controller samples every 100 ms); there the new writes
// are mirrored during the resync, here they are only marked until it
// caught up, so a resync held back by any trickle of writes could fall
// ever further behind: only a rate above heavyRate counts.
const (
	// paceWindow is how recent "recently" is: application writes are
	// counted per window of 100 ms (DRBD's controller's step), and the
	// current and the previous window decide.
	paceWindow = 100 * time.Millisecond
	// heavyRate: an application writing at 4 MiB/s or more (400 KiB in a
	// window, 100 writes of 4 KiB: 1000 IOPS, a good part of what an SD
	// card sustains) writes heavily. Below it the resync runs at full speed
	// and, on any line faster than heavyRate, shrinks the backlog faster
	// than such an application grows it.
	heavyRate = 4 << 20
	// minResyncRate is the resync's rate under heavy writes, 1 MiB/s: four
	// times DRBD's default c-min-rate (250 KiB/s, set for a disk's seeks);
	// it keeps the resync moving and costs a few percent of a core on an
	// ARM core without AES instructions (the stream is TLS), next to
	// nothing on the line.
	minResyncRate = 1 << 20
	// throttledChunk is the most one throttled resync record carries, so
	// that the minimum rate comes in steps of 128 ms, not one MiB a second.
	throttledChunk = 128 << 10
)

// pacer measures the application's writes and spaces the throttled
// resync. Guarded by the Primary's mu.
type pacer struct {
	start     time.Time // of the current window
	app, prev int64     // bytes the application wrote in the current and the previous window
	next      time.Time // when the throttled resync may send again
	// parks counts the throttled resync's waits (tests wait for them).
	parks uint64
}

// roll starts a new window once the current one is over.
func (pa *pacer) roll(now time.Time) {
	d := now.Sub(pa.start)
	if d < paceWindow {
		return
	}
	pa.prev = 0
	if d < 2*paceWindow {
		pa.prev = pa.app
	}
	pa.app = 0
	pa.start = now
}

// wrote counts an application write of n bytes.
func (pa *pacer) wrote(now time.Time, n int64) {
	pa.roll(now)
	pa.app += n
}

// heavy reports whether the application wrote at heavyRate or more in
// the current or the previous window.
func (pa *pacer) heavy(now time.Time) bool {
	pa.roll(now)
	const perWindow = heavyRate * int64(paceWindow) / int64(time.Second)
	return pa.app >= perWindow || pa.prev >= perWindow
}

// sent charges a throttled resync record of n bytes.
func (pa *pacer) sent(now time.Time, n int64) {
	if pa.next.Before(now) {
		pa.next = now
	}
	pa.next = pa.next.Add(time.Duration(n * int64(time.Second) / minResyncRate))
}
