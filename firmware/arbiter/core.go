// Package arbiter is Pairguard's arbiter: a third box that grants exactly
// one node of a pair at a time the right to be primary while the two cannot
// hear each other (README, "The arbiter").
//
// The package has three layers:
//
//   - Core, the lease logic: pure, no sockets, no clock. Time is an input (a
//     monotonic duration since an arbitrary base), so a step of the wall
//     clock cannot move a lease.
//   - The wire protocol (Request, Reply): fixed-length datagrams
//     authenticated with HMAC-SHA256 under a key derived from the pair key
//     (DeriveKey), so that an arbiter cannot forge heartbeats.
//   - Server (Listen) serves many pairs on one UDP port and persists its
//     grants; Client is the pure lease client of a node and Dial its UDP
//     driver.
//
// # Leases
//
// Per pair there is at most one holder. The holder renews its lease; any
// other node is granted only after the holder's lease has expired plus
// Config.Margin. After its own start the arbiter grants nothing to anybody
// for Config.MaxLease plus Config.Margin, the longest lease it may have
// granted before (safe even when its state is lost); only the holder named
// in its fsynced state may renew during that wait, since that state is
// written before any new holder is told of its grant.
//
// When the pair is free, the nodes that asked within Config.Window compete.
// A decision falls once some node has been asking for a whole window (a
// node denied while the pair was busy has been: a takeover after a
// holder's lease ran out is not delayed), so that a node asking alone on a
// free pair waits one window for the other. The arbiter grants, in this
// order of preference, the node with
// up-to-date data, then the newer data generation, then the previous
// holder, then the main, then the lower node id. A node measures its lease
// from the moment it sent the request, the arbiter from the moment it
// received it, so the node's view always ends first.
//
// # Replay
//
// Replies echo the request's fresh nonce. Requests carry a per-node counter
// that must grow; the arbiter keeps the last one it accepted and persists a
// reservation above it (Core asks for a persist every counterBlock
// requests), so that after a restart no request older than the restart is
// accepted. A node whose counter is too low (it restarted) is told the
// lowest counter the arbiter accepts, in an authenticated reply to its own
// nonce, and continues from there.
//
// # Guarantees and limits
//
// Two nodes that cannot hear each other are never primary at once: a node
// without its peer is primary only while its lease runs (it steps down
// ReleaseMargin before the end, measured from its request), and the other
// node is granted only after that lease as the arbiter measured it (from
// the later receipt) plus Margin. This rests on monotonic clocks that run
// at about the same rate (not on synchronised wall clocks), on a daemon
// that ticks its engine well within ReleaseMargin, and on the address being
// removed within ReleaseMargin + Margin.
//
// What it cannot do: keep the service up when the arbiter and the peer are
// both gone (the primary cannot tell a dead peer from its own isolation,
// so it steps down); stop a node frozen for longer than its lease (a paused
// VM, SIGSTOP) from holding the address until its first tick after it
// resumes; serve more than the availability of one box while the nodes
// are cut apart (with the peer heard, the arbiter's loss is only an alarm).
// A lost state dir costs one lease of waiting and the counters' replay
// protection until the nodes ask again; a replayed request can at worst
// delay a grant, never give a lease to a node that did not ask (a reply
// needs the node's fresh nonce).
package arbiter

import (
	"fmt"
	"maps"
	"slices"
	"time"
)

// Defaults of Config and of the node's lease client.
//
// A node asks for a lease of its failover-time + 500 ms (DefaultLease with
// the default failover-time of 500 ms), renews it every quarter lease and
// releases the service address ReleaseMargin before the lease ends. When a
// primary loses its power just after a renewal, the arbiter grants the
// spare after lease + Margin + one round trip: failover-time + 700 ms + RTT,
// within the target of failover-time + 1 s.
const (
	DefaultLease    = time.Second
	DefaultMargin   = 200 * time.Millisecond
	DefaultMaxLease = 5 * time.Second
	DefaultWindow   = 250 * time.Millisecond
	// ReleaseMargin is how long before its lease ends a node releases the
	// service address (the engine's default).
	ReleaseMargin = 100 * time.Millisecond
	// LeaseOverFailover is what a node adds to its failover-time to get the
	// lease it asks for.
	LeaseOverFailover = 500 * time.Millisecond
)

// counterBlock is how far above the last accepted counter the persisted
// reservation reaches: one fsync per counterBlock requests of a node.
const counterBlock = 1 << 10

// Config is the arbiter's configuration.
type Config struct {
	// MaxLease caps the lease a node may ask for. After its start the
	// arbiter waits MaxLease + Margin before granting a node that is not
	// the recorded holder.
	MaxLease time.Duration
	// Margin is added to an expired lease before another node is granted:
	// it covers the holder's scheduling delay in releasing its address and
	// the drift between the clocks.
	Margin time.Duration
	// Window is the decision window: nodes that asked within it compete for
	// a free lease.
	Window time.Duration
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{MaxLease: DefaultMaxLease, Margin: DefaultMargin, Window: DefaultWindow}
}

// Validate checks the relations between the durations.
func (c Config) Validate() error {
	switch {
	case c.MaxLease <= 0:
		return fmt.Errorf("arbiter.max-lease: %v must be positive", c.MaxLease)
	case c.Margin <= 0:
		return fmt.Errorf("arbiter.margin: %v must be positive", c.Margin)
	case c.Window <= 0 || c.Window > c.MaxLease:
		return fmt.Errorf("arbiter.window: %v must be positive and at most arbiter.max-lease (%v)", c.Window, c.MaxLease)
	}
	return nil
}

// Core is the arbiter's lease logic for many pairs. It is not safe for
// concurrent use.
type Core struct {
	cfg   Config
	start time.Duration
	now   time.Duration
	pairs map[uint32]*pairState
}

type pairState struct {
	holder  uint64        // 0: nobody
	epoch   uint64        // incremented at every grant to a new holder
	expires time.Duration // end of the holder's lease (after start: start + MaxLease)
	granted bool          // a lease was granted since the start (expires is a real lease)
	nodes   map[uint64]*nodeState
}

type nodeState struct {
	last     uint64        // the last counter accepted
	reserved uint64        // on stable storage: counters below it are refused after a restart
	asked    time.Duration // the last acquire
	streak   time.Duration // when its current run of acquires began (gaps under Window)
	everAsk  bool
	req      Request // the last acquire
}

// New returns a core started at now, with the state loaded from disk (nil
// when there is none). Pairs are added with AddPair.
func New(cfg Config, now time.Duration, st *State) (*Core, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Core{cfg: cfg, start: now, now: now, pairs: map[uint32]*pairState{}}
	if st != nil {
		for _, ps := range st.Pairs {
			p := c.addPair(ps.Pair)
			p.holder, p.epoch = ps.Holder, ps.Epoch
			for _, ns := range ps.Nodes {
				// A counter below the reservation may have been accepted
				// before the restart: accept only from the reservation on.
				p.nodes[ns.Node] = &nodeState{last: ns.Reserved - 1, reserved: ns.Reserved}
				if ns.Reserved == 0 {
					p.nodes[ns.Node].last = 0
				}
			}
		}
	}
	return c, nil
}

// AddPair serves the pair with the given id (PairID of its arbiter key). A
// pair added while running waits MaxLease + Margin like a restart, unless
// it is already served.
func (c *Core) AddPair(id uint32) {
	if _, ok := c.pairs[id]; !ok {
		c.addPair(id)
		c.pairs[id].expires = c.now + c.cfg.MaxLease
	}
}

// RemovePair stops serving a pair.
func (c *Core) RemovePair(id uint32) { delete(c.pairs, id) }

// Serves reports whether the pair is served.
func (c *Core) Serves(id uint32) bool { _, ok := c.pairs[id]; return ok }

func (c *Core) addPair(id uint32) *pairState {
	p := &pairState{expires: c.start + c.cfg.MaxLease, nodes: map[uint64]*nodeState{}}
	c.pairs[id] = p
	return p
}

// Handle decides on an authenticated request that arrived at now. With
// persist set, the caller must write State to stable storage before it
// sends the reply; if that fails it must not send it.
func (c *Core) Handle(now time.Duration, req Request) (rep Reply, persist bool) {
	now = c.advance(now)
	rep = Reply{Type: ReplyDeny, Pair: req.Pair, Node: req.Node, Nonce: req.Nonce}
	p, ok := c.pairs[req.Pair]
	if !ok {
		rep.Reason = ReasonUnknownPair
		return rep, false
	}
	n := p.nodes[req.Node]
	if n == nil {
		n = &nodeState{}
		p.nodes[req.Node] = n
	}
	if req.Counter <= n.last {
		rep.Reason = ReasonStaleCounter
		c.fill(&rep, p, now, n)
		return rep, false
	}
	n.last = req.Counter
	if n.last >= n.reserved {
		n.reserved = n.last + counterBlock
		persist = true
	}
	if req.Type == RequestRelease {
		if p.holder == req.Node && now < p.expires+c.cfg.Margin {
			// The node released the address before it sent this: the
			// lease is over now, without a margin.
			p.expires = now - c.cfg.Margin
		}
		n.everAsk = false // no longer a candidate
		rep.Reason = ReasonReleased
		c.fill(&rep, p, now, n)
		return rep, persist
	}
	if !n.everAsk || now-n.asked > c.cfg.Window {
		n.streak = now
	}
	n.asked, n.everAsk, n.req = now, true, req
	ttl := req.TTL
	if ttl <= 0 || ttl > c.cfg.MaxLease {
		ttl = c.cfg.MaxLease
	}
	busy := now < p.expires+c.cfg.Margin
	switch {
	case busy && p.holder == req.Node:
		// The holder renews (also the recorded holder after a restart).
	case busy && p.holder == 0:
		rep.Reason = ReasonStarting
	case busy:
		rep.Reason = ReasonHeld
	case now-c.contest(p, now) < c.cfg.Window:
		// Nobody has asked for a whole window yet: give the other node
		// the chance to compete.
		rep.Reason = ReasonDeciding
	case c.best(p, now) != req.Node:
		rep.Reason = ReasonPreferred
	default:
		if p.holder != req.Node {
			p.holder = req.Node
			p.epoch++
			persist = true
		}
	}
	if rep.Reason == ReasonNone {
		p.expires, p.granted = now+ttl, true
		rep.Type, rep.TTL = ReplyGrant, ttl
	}
	c.fill(&rep, p, now, n)
	return rep, persist
}

// fill completes a reply with the pair's holder and epoch, the wait before a
// denied node should ask again and the lowest counter accepted.
func (c *Core) fill(rep *Reply, p *pairState, now time.Duration, n *nodeState) {
	rep.Holder, rep.Epoch = p.holder, p.epoch
	rep.Floor = n.last + 1
	if rep.Type == ReplyDeny {
		switch rep.Reason {
		case ReasonHeld, ReasonStarting:
			rep.RetryAfter = p.expires + c.cfg.Margin - now
		case ReasonPreferred:
			rep.RetryAfter = c.cfg.Window
		case ReasonDeciding:
			rep.RetryAfter = c.contest(p, now) + c.cfg.Window - now
		}
	}
}

// contest returns since when the nodes asking now have been asking: the
// earliest start of a run of requests among the nodes that asked within
// the window.
func (c *Core) contest(p *pairState, now time.Duration) time.Duration {
	since := now
	for _, n := range p.nodes {
		if n.everAsk && now-n.asked <= c.cfg.Window && n.streak < since {
			since = n.streak
		}
	}
	return since
}

// best returns the node a free pair goes to: among the nodes that asked
// within the window, the preferred one.
func (c *Core) best(p *pairState, now time.Duration) uint64 {
	var best uint64
	var bn *nodeState
	for _, id := range slices.Sorted(maps.Keys(p.nodes)) {
		n := p.nodes[id]
		if !n.everAsk || now-n.asked > c.cfg.Window {
			continue
		}
		if bn == nil || prefer(n.req, bn.req, p.holder) > 0 {
			best, bn = id, n
		}
	}
	return best
}

// prefer compares two candidates for a free lease: up-to-date data, then the
// newer generation, then the previous holder, then the main, then the lower
// node id. It returns 1 if a wins, -1 if b does.
func prefer(a, b Request, prev uint64) int {
	if (a.Data == DataUpToDate) != (b.Data == DataUpToDate) {
		return cmpBool(a.Data == DataUpToDate)
	}
	if a.Generation != b.Generation {
		if a.History == b.Generation && a.Generation != 0 {
			return 1
		}
		if b.History == a.Generation && b.Generation != 0 {
			return -1
		}
	}
	if (a.Node == prev) != (b.Node == prev) {
		return cmpBool(a.Node == prev)
	}
	if (a.Mode == ModeMain) != (b.Mode == ModeMain) {
		return cmpBool(a.Mode == ModeMain)
	}
	return cmpBool(a.Node < b.Node)
}

func cmpBool(b bool) int {
	if b {
		return 1
	}
	return -1
}

// advance moves the core's clock; a time before the last one seen (a
// caller bug: the input is monotonic) counts as no time passed.
func (c *Core) advance(now time.Duration) time.Duration {
	if now > c.now {
		c.now = now
	}
	return c.now
}

// State is what the arbiter keeps on stable storage.
type State struct {
	Pairs []PairState `json:"pairs"`
}

// PairState is the persisted state of one pair.
type PairState struct {
	Pair   uint32      `json:"pair"`
	Holder uint64      `json:"holder"`
	Epoch  uint64      `json:"epoch"`
	Nodes  []NodeState `json:"nodes"`
}

// NodeState is the persisted state of one node: counters below Reserved
// are refused after a restart.
type NodeState struct {
	Node     uint64 `json:"node"`
	Reserved uint64 `json:"reserved"`
}

// State returns the state to persist, sorted by pair and node.
func (c *Core) State() State {
	var st State
	for _, id := range slices.Sorted(maps.Keys(c.pairs)) {
		p := c.pairs[id]
		ps := PairState{Pair: id, Holder: p.holder, Epoch: p.epoch}
		for _, nid := range slices.Sorted(maps.Keys(p.nodes)) {
			ps.Nodes = append(ps.Nodes, NodeState{Node: nid, Reserved: p.nodes[nid].reserved})
		}
		st.Pairs = append(st.Pairs, ps)
	}
	return st
}

// PairStatus is one pair in the arbiter's status.
type PairStatus struct {
	Pair    string       `json:"pair"`   // the pair id, 8 hex digits
	Holder  string       `json:"holder"` // the holder's node id, 16 hex digits, "" for none
	Epoch   uint64       `json:"epoch"`
	LeaseMS int64        `json:"lease-ms"` // what is left of the holder's lease, 0 when none
	Nodes   []NodeStatus `json:"nodes"`
}

// NodeStatus is one node of a pair in the arbiter's status.
type NodeStatus struct {
	Node    string `json:"node"`
	AskedMS int64  `json:"asked-ms"` // since the last acquire, -1 for never
	Mode    string `json:"mode,omitempty"`
	Data    string `json:"data,omitempty"`
}

// Status lists the pairs, their holders and what is left of their leases.
// Starting reports whether the arbiter still waits after its start.
func (c *Core) Status(now time.Duration) (pairs []PairStatus, starting bool) {
	now = c.advance(now)
	for _, id := range slices.Sorted(maps.Keys(c.pairs)) {
		p := c.pairs[id]
		ps := PairStatus{Pair: fmt.Sprintf("%08x", id), Epoch: p.epoch}
		if p.holder != 0 {
			ps.Holder = fmt.Sprintf("%016x", p.holder)
			if p.granted && p.expires > now {
				ps.LeaseMS = (p.expires - now).Milliseconds()
			}
		}
		for _, nid := range slices.Sorted(maps.Keys(p.nodes)) {
			n := p.nodes[nid]
			ns := NodeStatus{Node: fmt.Sprintf("%016x", nid), AskedMS: -1}
			if n.everAsk {
				ns.AskedMS = (now - n.asked).Milliseconds()
				ns.Mode, ns.Data = n.req.Mode.String(), n.req.Data.String()
			}
			ps.Nodes = append(ps.Nodes, ns)
		}
		pairs = append(pairs, ps)
	}
	return pairs, now < c.start+c.cfg.MaxLease+c.cfg.Margin
}
