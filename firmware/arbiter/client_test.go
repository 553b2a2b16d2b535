package arbiter

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"
)

// harness runs lease clients against a Core over a fake network with a
// fake clock, by datagrams: the codec, the core and the client together.
type harness struct {
	t       *testing.T
	now     time.Duration
	key     *Key
	core    *Core
	clients map[uint64]*Client
	delay   time.Duration // one way
	down    map[uint64]bool
	arbDown bool
	queue   []flight
	events  map[uint64][]Event
}

type flight struct {
	at   time.Duration
	to   uint64 // 0: the arbiter
	from uint64
	b    []byte
}

func newHarness(t *testing.T) *harness {
	k := testKey()
	core, err := New(testCfg(), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	core.AddPair(k.PairID())
	h := &harness{t: t, key: k, core: core, clients: map[uint64]*Client{}, delay: ms,
		down: map[uint64]bool{}, events: map[uint64][]Event{}}
	for _, id := range []uint64{mainID, spare} {
		h.clients[id] = h.newClient(id)
	}
	return h
}

func (h *harness) newClient(id uint64) *Client {
	mode := ModeSpare
	if id == mainID {
		mode = ModeMain
	}
	c, err := NewClient(ClientConfig{Key: h.key, Node: id, Mode: mode, Lease: time.Second,
		Rand: rand.NewChaCha8([32]byte{byte(id), byte(h.now)})})
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

func (h *harness) run(d time.Duration) {
	for end := h.now + d; h.now < end; {
		h.now += ms
		var due []flight
		rest := h.queue[:0]
		for _, f := range h.queue {
			if f.at <= h.now {
				due = append(due, f)
			} else {
				rest = append(rest, f)
			}
		}
		h.queue = rest
		for _, f := range due {
			h.deliver(f)
		}
		for _, id := range []uint64{mainID, spare} {
			if h.down[id] {
				continue
			}
			c := h.clients[id]
			if ev, ok := c.Tick(h.now); ok {
				h.events[id] = append(h.events[id], ev)
			}
			b, ok, err := c.Poll(h.now, Info{Role: RoleSecondary, Data: DataUpToDate}, nil)
			if err != nil {
				h.t.Fatal(err)
			}
			if ok && !h.arbDown {
				h.queue = append(h.queue, flight{at: h.now + h.delay, from: id, b: b})
			}
		}
	}
}

func (h *harness) deliver(f flight) {
	if f.to == 0 {
		if h.arbDown {
			return
		}
		var req Request
		if err := DecodeRequest(f.b, h.key, &req); err != nil {
			h.t.Fatalf("arbiter refused a request: %v", err)
		}
		rep, _ := h.core.Handle(h.now, req)
		b, err := rep.Append(nil, h.key)
		if err != nil {
			h.t.Fatal(err)
		}
		h.queue = append(h.queue, flight{at: h.now + h.delay, to: f.from, b: b})
		return
	}
	if h.down[f.to] {
		return
	}
	ev, ok, err := h.clients[f.to].Receive(h.now, f.b)
	if err != nil {
		h.t.Errorf("node %d refused a reply: %v", f.to, err)
	}
	if ok {
		h.events[f.to] = append(h.events[f.to], ev)
	}
}

func (h *harness) until(id uint64) time.Duration { return h.clients[id].Status().Until }

func TestClientGrantMeasuredFromSend(t *testing.T) {
	h := newHarness(t)
	h.delay = 40 * ms
	h.run(wait - 500*ms)
	h.clients[mainID].Want(h.now, true)
	h.run(800 * ms)
	evs := h.events[mainID]
	if len(evs) == 0 || evs[len(evs)-1].Kind != EventGranted {
		t.Fatalf("events %+v, want a grant", evs)
	}
	// The grant came 80 ms after its request: the lease ends one lease
	// after the send, 80 ms before what the arrival would give.
	got := evs[len(evs)-1]
	for _, ev := range evs {
		if ev.Kind == EventGranted {
			got = ev
			break
		}
	}
	if got.Until%ms != 0 || got.Until < wait || got.Until > wait+time.Second+300*ms {
		t.Fatalf("first grant until %v", got.Until)
	}
	// The arbiter's view ends at least one one-way delay later.
	p := h.core.pairs[h.key.PairID()]
	if p.expires-h.until(mainID) < h.delay {
		t.Errorf("arbiter's lease ends %v, the node's %v: want the node's earlier by the delay", p.expires, h.until(mainID))
	}
}

func TestClientRenewsAndSpareWaits(t *testing.T) {
	h := newHarness(t)
	h.clients[mainID].Want(0, true)
	h.clients[spare].Want(0, true)
	h.run(wait + 2*time.Second)
	if u := h.until(mainID); u <= h.now+500*ms {
		t.Fatalf("the main's lease ends at %v (now %v): not renewed", u, h.now)
	}
	if h.until(spare) != 0 {
		t.Fatalf("the spare holds a lease too: %v", h.until(spare))
	}
	last := h.events[spare][len(h.events[spare])-1]
	if last.Kind != EventDenied || last.Holder != mainID || last.Reason != ReasonHeld {
		t.Errorf("spare's last event %+v", last)
	}
}

// TestPowerLossTakeover checks the default lease times: a holder that
// dies just after a renewal is replaced within lease + margin + one retry.
func TestPowerLossTakeover(t *testing.T) {
	h := newHarness(t)
	h.clients[mainID].Want(0, true)
	h.run(wait + time.Second)
	h.clients[spare].Want(h.now, true) // the spare misses the main
	// Die just after a renewal went out.
	for h.clients[mainID].Next() != h.now+h.clients[mainID].cfg.Renew {
		h.run(ms)
	}
	h.run(2 * h.delay) // the renewal arrives
	h.down[mainID] = true
	died := h.now
	for h.until(spare) == 0 && h.now-died < 5*time.Second {
		h.run(ms)
	}
	took := h.now - died
	limit := time.Second + testCfg().Margin + 100*ms + 2*h.delay
	if took > limit || took < time.Second+testCfg().Margin-2*h.delay {
		t.Errorf("spare granted %v after the main died; want at most %v, not before lease + margin", took, limit)
	}
	// Never two leases on the nodes' clocks.
	if h.until(mainID) > h.now-took+time.Second {
		t.Errorf("main's lease ended at %v", h.until(mainID))
	}
}

func TestClientRefusesReplays(t *testing.T) {
	h := newHarness(t)
	c := h.clients[mainID]
	c.Want(0, true)
	b, _, _ := c.Poll(0, Info{Role: RolePrimary, Data: DataUpToDate}, nil)
	var req Request
	DecodeRequest(b, h.key, &req)
	rep, _ := h.core.Handle(0, req)
	rb, _ := rep.Append(nil, h.key)
	if _, ok, err := c.Receive(ms, rb); !ok || err != nil {
		t.Fatalf("first delivery: %v %v", ok, err)
	}
	if _, ok, err := c.Receive(2*ms, rb); ok || err == nil {
		t.Fatal("a replayed reply was accepted")
	}
	// A reply to another node's nonce, or tampered, is refused.
	rep.Nonce[0] ^= 1
	rb, _ = rep.Append(nil, h.key)
	if _, ok, _ := c.Receive(3*ms, rb); ok {
		t.Fatal("a reply to an unknown nonce was accepted")
	}
	rb[10] ^= 1
	if _, ok, _ := c.Receive(3*ms, rb); ok {
		t.Fatal("a tampered reply was accepted")
	}
}

func TestClientAdoptsFloorAfterRestart(t *testing.T) {
	h := newHarness(t)
	h.clients[mainID].Want(0, true)
	h.run(wait + time.Second)
	if h.until(mainID) == 0 {
		t.Fatal("no lease")
	}
	// The main restarts: its counter starts again from zero, below what
	// the arbiter accepts. One stale reply later it goes on and renews.
	h.clients[mainID] = h.newClient(mainID)
	h.clients[mainID].Want(h.now, true)
	h.events[mainID] = nil
	h.run(300 * ms)
	evs := h.events[mainID]
	if len(evs) < 2 || evs[0].Reason != ReasonStaleCounter || evs[len(evs)-1].Kind != EventGranted {
		t.Fatalf("events after restart %+v", evs)
	}
}

func TestClientUnreachable(t *testing.T) {
	h := newHarness(t)
	h.arbDown = true
	h.clients[mainID].Want(0, true)
	h.run(999 * ms)
	if len(h.events[mainID]) != 0 {
		t.Fatalf("events before the unreachable time %+v", h.events[mainID])
	}
	h.run(2 * time.Second)
	if evs := h.events[mainID]; len(evs) != 1 || evs[0].Kind != EventUnreachable {
		t.Fatalf("events %+v, want one unreachable", evs)
	}
	h.arbDown = false
	h.run(100 * ms)
	if evs := h.events[mainID]; len(evs) != 2 || evs[1].Kind != EventDenied || h.clients[mainID].Status().Unreachable {
		t.Fatalf("events %+v after the arbiter came back", evs)
	}
}

func TestClientReleases(t *testing.T) {
	h := newHarness(t)
	h.clients[mainID].Want(0, true)
	h.clients[spare].Want(0, true)
	h.run(wait + 500*ms)
	h.clients[mainID].Want(h.now, false)
	if h.until(mainID) != 0 {
		t.Fatal("a released lease is still held")
	}
	h.run(300 * ms)
	if h.until(spare) == 0 {
		t.Fatalf("spare not granted after the release; events %+v", h.events[spare][len(h.events[spare])-1])
	}
}

func TestClientConfig(t *testing.T) {
	if _, err := NewClient(ClientConfig{Node: 1, Mode: ModeMain}); err == nil {
		t.Error("no key accepted")
	}
	if _, err := NewClient(ClientConfig{Key: testKey(), Node: 1, Mode: ModeMain, Lease: time.Second, Renew: time.Second}); err == nil {
		t.Error("renew as long as the lease accepted")
	}
	c, err := NewClient(ClientConfig{Key: testKey(), Node: 1, Mode: ModeMain})
	if err != nil || c.cfg.Lease != DefaultLease || c.cfg.Renew != DefaultLease/4 {
		t.Errorf("defaults %+v, %v", c.cfg, err)
	}
	if _, ok, _ := c.Poll(0, Info{}, nil); ok {
		t.Error("a client that wants nothing sent a request")
	}
	c.Want(0, true)
	b, ok, _ := c.Poll(0, Info{}, nil)
	var r Request
	if !ok || DecodeRequest(b, testKey(), &r) != nil || r.Role != RoleStarting || r.Data != DataInconsistent {
		t.Errorf("request with an empty info: %+v", r)
	}
	if bytes.Equal(b[24:40], make([]byte, 16)) {
		t.Error("zero nonce")
	}
}
