package daemon

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/pairguard/pairguard/firmware/engine"
	"github.com/pairguard/pairguard/firmware/hooks"
	"github.com/pairguard/pairguard/firmware/logbook"
)

// errDemoted is the cause given to a to-primary hook killed by a demotion.
var errDemoted = errors.New("the node left the primary role")

// hookQueue holds the hooks the engine asked for, in its order; one worker
// runs them one at a time. A to-secondary kills a running to-primary (its
// process group) and drops a queued one, so a demotion never finishes
// before the promotion it undoes and no service is left running on a node
// that is no longer primary.
type hookQueue struct {
	mu      sync.Mutex
	jobs    []*hookJob
	running *hookJob
	closed  bool
	ready   chan struct{}
}

type hookJob struct {
	runner hooks.Runner
	env    hooks.Env
	wait   bool // the engine expects HookDone
	ctx    context.Context
	cancel context.CancelCauseFunc
}

func newHookQueue() *hookQueue { return &hookQueue{ready: make(chan struct{}, 1)} }

func (q *hookQueue) push(j *hookJob) {
	q.mu.Lock()
	if j.env.Event == "to-secondary" {
		q.jobs = slices.DeleteFunc(q.jobs, func(o *hookJob) bool {
			if o.env.Event == "to-primary" {
				o.cancel(errDemoted)
				return true
			}
			return false
		})
		if q.running != nil && q.running.env.Event == "to-primary" {
			q.running.cancel(errDemoted)
		}
	}
	q.jobs = append(q.jobs, j)
	q.mu.Unlock()
	q.wake()
}

func (q *hookQueue) wake() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// next blocks until a job is queued; nil once the queue is closed and empty.
func (q *hookQueue) next() *hookJob {
	for {
		q.mu.Lock()
		q.running = nil
		if len(q.jobs) > 0 {
			j := q.jobs[0]
			q.jobs = q.jobs[1:]
			q.running = j
			q.mu.Unlock()
			return j
		}
		closed := q.closed
		q.mu.Unlock()
		if closed {
			return nil
		}
		<-q.ready
	}
}

// close lets the worker finish the queued hooks and return.
func (q *hookQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.wake()
}

// runHooks is the hook worker.
func (d *Daemon) runHooks() {
	for {
		j := d.hookq.next()
		if j == nil {
			return
		}
		results, err := j.runner.Run(j.ctx, j.env, &d.hookBG)
		j.cancel(nil)
		for _, r := range results {
			d.noteHook(j.env, r)
		}
		if errors.Is(err, errDemoted) { // killed or not started: no failure
			d.logEntry(logbook.Entry{Kind: "hook", Role: j.env.Role, Epoch: j.env.Epoch,
				Message: fmt.Sprintf("%s killed: %v", j.env.Event, errDemoted)})
			continue
		}
		if err != nil {
			d.log.Warn("hook failed", "hook", j.env.Event, "err", err)
		}
		if j.wait || err != nil {
			d.queue(engine.HookDone{Name: j.env.Event, Err: err})
		}
	}
}

// maxHookEntry bounds the output one logbook entry carries.
const maxHookEntry = 1024

// noteHook puts what a script printed, and its failure, in the logbook.
func (d *Daemon) noteHook(env hooks.Env, r hooks.Result) {
	out := strings.TrimSpace(r.Output)
	if len(out) > maxHookEntry {
		out = out[:maxHookEntry] + " ..."
	}
	msg := r.Script + " " + env.Event
	kind := "hook"
	switch {
	case errors.Is(r.Err, errDemoted):
		msg += ": " + r.Err.Error()
	case r.Err != nil:
		kind = "hook-failed"
		msg += ": " + r.Err.Error()
	case r.Background:
		msg += ": exit 0, left a background process"
	default:
		msg += ": exit 0"
	}
	if out != "" {
		msg += ": " + out
	}
	d.logEntry(logbook.Entry{Kind: kind, Role: env.Role, Epoch: env.Epoch, Message: msg})
}
