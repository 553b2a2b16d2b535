package daemon

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/pairguard/pairguard/firmware/engine"
	"github.com/pairguard/pairguard/firmware/logbook"
)

// FollowEvent is one item of `pairguard log --follow`: a logbook entry, a
// change of role or an alarm raised or cleared, as it happens.
type FollowEvent struct {
	Type   string         `json:"type"` // "entry", "role" or "alarm"
	Time   time.Time      `json:"time"`
	Entry  *logbook.Entry `json:"entry,omitempty"`
	Role   string         `json:"role,omitempty"`  // role: the new role
	Prev   string         `json:"prev,omitempty"`  // role: the role before
	Epoch  uint64         `json:"epoch,omitempty"` // role
	Alarm  string         `json:"alarm,omitempty"` // alarm: its name
	Raised bool           `json:"raised,omitempty"`
	Alarms []string       `json:"alarms,omitempty"` // alarm: every alarm raised now
	Reason string         `json:"reason,omitempty"`
	// Lost counts the events dropped before this one because the follower
	// read too slowly.
	Lost int `json:"lost,omitempty"`
}

// Text renders the event as one terminal line.
func (e FollowEvent) Text() string {
	var b strings.Builder
	if e.Lost > 0 {
		fmt.Fprintf(&b, "(%d events lost: the reader was too slow)\n", e.Lost)
	}
	switch e.Type {
	case "entry":
		b.WriteString(e.Entry.String())
	case "role":
		fmt.Fprintf(&b, "%s %-17s %s (was %s), epoch %d: %s", stamp(e.Time), "role-changed", e.Role, e.Prev, e.Epoch, e.Reason)
	case "alarm":
		what := "alarm-cleared"
		msg := e.Alarm
		if e.Raised {
			what, msg = "alarm-raised", e.Alarm+": "+e.Reason
		}
		fmt.Fprintf(&b, "%s %-17s %s", stamp(e.Time), what, msg)
	}
	b.WriteByte('\n')
	return b.String()
}

func stamp(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05.000") }

// followBuffer is how many events a follower may fall behind.
const followBuffer = 256

// followers are the open `log --follow` streams.
type followers struct {
	mu     sync.Mutex
	subs   map[*follower]struct{}
	closed bool
}

type follower struct {
	ch   chan FollowEvent
	lost int // guarded by followers.mu
}

// add subscribes a follower; nil once the daemon has stopped.
func (fs *followers) add() *follower {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.closed {
		return nil
	}
	if fs.subs == nil {
		fs.subs = map[*follower]struct{}{}
	}
	f := &follower{ch: make(chan FollowEvent, followBuffer)}
	fs.subs[f] = struct{}{}
	return f
}

func (fs *followers) remove(f *follower) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if _, ok := fs.subs[f]; ok {
		delete(fs.subs, f)
		close(f.ch)
	}
}

// publish hands ev to every follower without blocking.
func (fs *followers) publish(ev FollowEvent) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for f := range fs.subs {
		ev := ev
		ev.Lost = f.lost
		select {
		case f.ch <- ev:
			f.lost = 0
		default:
			f.lost++
		}
	}
}

// closeAll ends every stream: the daemon stops.
func (fs *followers) closeAll() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.closed = true
	for f := range fs.subs {
		delete(fs.subs, f)
		close(f.ch)
	}
}

func (d *Daemon) publishRole(rc engine.RoleChanged, epoch uint64) {
	d.follow.publish(FollowEvent{Type: "role", Time: time.Now(), Role: rc.Role.String(), Prev: rc.Prev.String(), Epoch: epoch, Reason: rc.Reason})
}

func (d *Daemon) publishAlarms(alarm string, raised bool, reason string) {
	var all []string
	for _, a := range d.eng.Status().Alarms {
		all = append(all, string(a))
	}
	d.follow.publish(FollowEvent{Type: "alarm", Time: time.Now(), Alarm: alarm, Raised: raised, Reason: reason, Alarms: all})
}

func (d *Daemon) publishEntry(e logbook.Entry) {
	d.follow.publish(FollowEvent{Type: "entry", Time: e.Time, Entry: &e})
}
