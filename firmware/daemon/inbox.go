package daemon

import (
	"sync"

	"github.com/pairguard/pairguard/firmware/engine"
)

// inbox is the loop's one ordered queue of events from its goroutines:
// checks, the witness, probes, hooks, the epoch writer, links and the
// mirror. Posting never blocks and never starts a goroutine, so an event
// cannot overtake an earlier one (etcd raft's node.go hands its loop one
// channel per kind; here one queue keeps the order across kinds too).
type inbox struct {
	mu    sync.Mutex
	queue []engine.Event
	ready chan struct{} // holds a token while queue is not empty
}

func newInbox() *inbox { return &inbox{ready: make(chan struct{}, 1)} }

// post appends ev.
func (b *inbox) post(ev engine.Event) {
	b.mu.Lock()
	b.queue = append(b.queue, ev)
	b.mu.Unlock()
	select {
	case b.ready <- struct{}{}:
	default:
	}
}

// take returns the queued events, oldest first, and empties the queue.
func (b *inbox) take() []engine.Event {
	b.mu.Lock()
	defer b.mu.Unlock()
	q := b.queue
	b.queue = nil
	return q
}
