package arbiter

import (
	"testing"
	"time"
)

const (
	pairA  = 0xa1a1a1a1
	mainID = 1
	spare  = 2
	ms     = time.Millisecond
)

func testCfg() Config {
	return Config{MaxLease: 2 * time.Second, Margin: 200 * ms, Window: 250 * ms}
}

// wait is how long a fresh arbiter grants nothing.
var wait = testCfg().MaxLease + testCfg().Margin

type asker struct {
	counters map[uint64]uint64
}

func (a *asker) req(node uint64, mut ...func(*Request)) Request {
	if a.counters == nil {
		a.counters = map[uint64]uint64{}
	}
	a.counters[node]++
	r := Request{
		Type: RequestAcquire, Pair: pairA, Node: node, Counter: a.counters[node],
		TTL: time.Second, Mode: ModeSpare, Role: RoleSecondary, Data: DataUpToDate,
		Generation: 7, History: 6, Epoch: 3,
	}
	if node == mainID {
		r.Mode = ModeMain
	}
	r.Nonce[0] = byte(node)
	r.Nonce[1] = byte(a.counters[node])
	for _, m := range mut {
		m(&r)
	}
	return r
}

func newCore(t *testing.T, st *State) *Core {
	t.Helper()
	c, err := New(testCfg(), 0, st)
	if err != nil {
		t.Fatal(err)
	}
	c.AddPair(pairA)
	return c
}

func wantGrant(t *testing.T, rep Reply, node uint64) {
	t.Helper()
	if rep.Type != ReplyGrant || rep.Holder != node || rep.Node != node {
		t.Fatalf("reply %+v, want a grant to %d", rep, node)
	}
}

func wantDeny(t *testing.T, rep Reply, reason Reason) {
	t.Helper()
	if rep.Type != ReplyDeny || rep.Reason != reason {
		t.Fatalf("reply %+v (reason %s), want deny %s", rep, rep.Reason, reason)
	}
}

func TestStartWaitsOneLease(t *testing.T) {
	for _, st := range []*State{nil, {Pairs: []PairState{{Pair: pairA}}}} {
		c := newCore(t, st)
		var a asker
		rep, _ := c.Handle(0, a.req(mainID))
		wantDeny(t, rep, ReasonStarting)
		if rep.RetryAfter != wait {
			t.Errorf("retry after %v, want %v", rep.RetryAfter, wait)
		}
		for at := wait - 300*ms; at < wait; at += 100 * ms {
			rep, _ = c.Handle(at, a.req(mainID))
			wantDeny(t, rep, ReasonStarting)
		}
		rep, persist := c.Handle(wait, a.req(mainID))
		wantGrant(t, rep, mainID)
		if !persist || rep.Epoch != 1 || rep.TTL != time.Second {
			t.Errorf("first grant: persist %v, epoch %d, ttl %v", persist, rep.Epoch, rep.TTL)
		}
	}
}

func TestRecordedHolderRenewsDuringStartWait(t *testing.T) {
	st := &State{Pairs: []PairState{{Pair: pairA, Holder: spare, Epoch: 4}}}
	c := newCore(t, st)
	if pairs, _ := c.Status(0); pairs[0].Holder != "0000000000000002" || pairs[0].LeaseMS != 0 {
		t.Errorf("status after the restart %+v: a recorded holder, no lease yet", pairs[0])
	}
	var a asker
	rep, persist := c.Handle(10*ms, a.req(spare))
	wantGrant(t, rep, spare)
	if rep.Epoch != 4 {
		t.Errorf("epoch %d, want the recorded 4", rep.Epoch)
	}
	if !persist {
		t.Error("the first counter after a restart must extend the reservation")
	}
	rep, _ = c.Handle(20*ms, a.req(mainID))
	wantDeny(t, rep, ReasonHeld)
	// The recorded holder stops renewing: the main gets the pair only after
	// its last lease plus the margin.
	rep, _ = c.Handle(10*ms+time.Second+199*ms, a.req(mainID))
	wantDeny(t, rep, ReasonHeld)
	rep, _ = a.ask(c, wait, mainID)
	wantGrant(t, rep, mainID)
	if rep.Epoch != 5 {
		t.Errorf("epoch %d, want 5", rep.Epoch)
	}
}

func TestOtherGrantedOnlyAfterExpiryPlusMargin(t *testing.T) {
	c := newCore(t, nil)
	var a asker
	t0 := wait
	wantGrant(t, must(a.ask(c, t0, mainID)), mainID)
	// Renewals keep the main's lease; the spare is denied with the time
	// left plus the margin.
	for at := t0 + 250*ms; at < t0+2*time.Second; at += 250 * ms {
		rep, persist := c.Handle(at, a.req(mainID))
		wantGrant(t, rep, mainID)
		if persist {
			t.Fatalf("a renewal asked for a persist at %v", at)
		}
		rep, _ = c.Handle(at+ms, a.req(spare))
		wantDeny(t, rep, ReasonHeld)
		if want := time.Second + 200*ms - ms; rep.RetryAfter != want || rep.Holder != mainID {
			t.Fatalf("deny %+v, want holder %d and retry after %v", rep, mainID, want)
		}
	}
	last := t0 + 1750*ms // the main's last renewal
	end := last + time.Second + 200*ms
	// The spare keeps asking, every 100 ms.
	for at := end - 301*ms; at < end; at += 100 * ms {
		wantDeny(t, must(c.Handle(at, a.req(spare))), ReasonHeld)
	}
	rep, persist := c.Handle(end, a.req(spare))
	wantGrant(t, rep, spare)
	if !persist || rep.Epoch != 2 {
		t.Errorf("new holder: persist %v epoch %d", persist, rep.Epoch)
	}
	// The old holder, back, is now denied.
	wantDeny(t, must(c.Handle(end+ms, a.req(mainID))), ReasonHeld)
}

func TestHolderRenewsWithinMargin(t *testing.T) {
	c := newCore(t, nil)
	var a asker
	wantGrant(t, must(a.ask(c, wait, mainID)), mainID)
	// Late but inside the margin: nobody else can have been granted.
	wantGrant(t, must(c.Handle(wait+time.Second+100*ms, a.req(mainID))), mainID)
}

func TestPreference(t *testing.T) {
	type node = func(*Request)
	outdated := func(r *Request) { r.Data = DataOutdated }
	older := func(r *Request) { r.Generation, r.History = 6, 5 }
	tests := []struct {
		name       string
		main, spr  node
		prevHolder uint64
		want       uint64
	}{
		{"main by default", nil, nil, 0, mainID},
		{"up-to-date data first", outdated, nil, 0, spare},
		{"up-to-date data before the previous holder", outdated, nil, mainID, spare},
		{"newer generation", older, nil, 0, spare},
		{"newer generation before the previous holder", older, nil, mainID, spare},
		{"previous holder before the main", nil, nil, spare, spare},
		{"unrelated generations: the main", func(r *Request) { r.Generation, r.History = 40, 41 }, nil, 0, mainID},
	}
	for _, tc := range tests {
		for _, spareFirst := range []bool{false, true} {
			c := newCore(t, nil)
			var a asker
			free := wait
			if tc.prevHolder != 0 {
				// The previous holder's lease runs out unrenewed.
				wantGrant(t, must(a.ask(c, wait, tc.prevHolder)), tc.prevHolder)
				free += time.Second + 200*ms
			}
			reqs := map[uint64]func() Request{
				mainID: func() Request { return a.req(mainID, orNop(tc.main)) },
				spare:  func() Request { return a.req(spare, orNop(tc.spr)) },
			}
			order := []uint64{mainID, spare}
			if spareFirst {
				order = []uint64{spare, mainID}
			}
			// Both ask every 50 ms from 100 ms before the pair is free (a
			// previous holder asking then would simply renew: it starts
			// asking once the pair is free).
			var winner uint64
			for at := free - 100*ms; winner == 0 && at < free+time.Second; at += 50 * ms {
				for i, id := range order {
					if id == tc.prevHolder && at < free {
						continue
					}
					rep, _ := c.Handle(at+time.Duration(i)*ms, reqs[id]())
					if rep.Type == ReplyGrant {
						winner = id
						break
					}
				}
			}
			if winner != tc.want {
				t.Errorf("%s (spare first %v): granted %d, want %d", tc.name, spareFirst, winner, tc.want)
			}
		}
	}
}

func orNop(f func(*Request)) func(*Request) {
	if f == nil {
		return func(*Request) {}
	}
	return f
}

func TestWindowOnlyRecentCompete(t *testing.T) {
	c := newCore(t, nil)
	var a asker
	c.Handle(wait-time.Second, a.req(mainID)) // long before: not a candidate now
	rep, _ := a.ask(c, wait, spare)
	wantGrant(t, rep, spare)

	// A node asking alone on a free pair waits one window for the other;
	// the preferred one wins, but when it does not come back within the
	// window the other gets the pair.
	c = newCore(t, nil)
	rep, _ = c.Handle(wait, a.req(spare))
	wantDeny(t, rep, ReasonDeciding)
	if rep.RetryAfter != testCfg().Window {
		t.Errorf("retry after %v, want the window", rep.RetryAfter)
	}
	c.Handle(wait+100*ms, a.req(mainID))
	rep, _ = c.Handle(wait+250*ms, a.req(spare))
	wantDeny(t, rep, ReasonPreferred)
	rep, _ = c.Handle(wait+351*ms, a.req(spare))
	wantGrant(t, rep, spare)
}

func TestReleaseFreesAtOnce(t *testing.T) {
	c := newCore(t, nil)
	var a asker
	wantGrant(t, must(a.ask(c, wait, mainID)), mainID)
	for at := wait + ms; at < wait+300*ms; at += 100 * ms {
		wantDeny(t, must(c.Handle(at, a.req(spare))), ReasonHeld)
	}
	rel := a.req(mainID, func(r *Request) { r.Type = RequestRelease })
	wantDeny(t, must(c.Handle(wait+302*ms, rel)), ReasonReleased)
	wantGrant(t, must(c.Handle(wait+303*ms, a.req(spare))), spare)
	// A release from a node that does not hold changes nothing.
	rel = a.req(mainID, func(r *Request) { r.Type = RequestRelease })
	c.Handle(wait+304*ms, rel)
	wantDeny(t, must(c.Handle(wait+305*ms, a.req(mainID))), ReasonHeld)
}

func TestCounters(t *testing.T) {
	c := newCore(t, nil)
	var a asker
	r := a.req(mainID)
	if _, persist := c.Handle(0, r); !persist {
		t.Error("the first counter of a node must be reserved on disk")
	}
	// A replayed request is refused and says where to go on.
	rep, _ := c.Handle(ms, r)
	wantDeny(t, rep, ReasonStaleCounter)
	if rep.Floor != r.Counter+1 {
		t.Errorf("floor %d, want %d", rep.Floor, r.Counter+1)
	}
	// The reservation is extended once per block.
	persists := 0
	for range 3 * counterBlock {
		if _, p := c.Handle(2*ms, a.req(mainID)); p {
			persists++
		}
	}
	if persists != 3 {
		t.Errorf("%d persists for %d requests, want 3", persists, 3*counterBlock)
	}
	// After a restart from the saved state, counters below the reservation
	// are refused, even ones never seen.
	st := c.State()
	c2 := newCore(t, &st)
	res := st.Pairs[0].Nodes[0].Reserved
	old := a.req(mainID, func(r *Request) { r.Counter = res - 1 })
	rep, _ = c2.Handle(0, old)
	wantDeny(t, rep, ReasonStaleCounter)
	if rep.Floor != res {
		t.Errorf("floor after restart %d, want %d", rep.Floor, res)
	}
	next := a.req(mainID, func(r *Request) { r.Counter = rep.Floor })
	rep, persist := c2.Handle(0, next)
	wantDeny(t, rep, ReasonStarting)
	if !persist {
		t.Error("a counter at the reservation must move it before the reply")
	}
}

func TestClockNeverRunsBack(t *testing.T) {
	c := newCore(t, nil)
	var a asker
	wantGrant(t, must(a.ask(c, wait+time.Hour, mainID)), mainID)
	// An input from the past (a caller bug) counts as no time passed: the
	// lease is not shortened, nor is the spare granted.
	rep, _ := c.Handle(wait, a.req(spare))
	wantDeny(t, rep, ReasonHeld)
	if rep.RetryAfter != time.Second+200*ms {
		t.Errorf("retry after %v", rep.RetryAfter)
	}
}

func TestLeaseIsCapped(t *testing.T) {
	c := newCore(t, nil)
	var a asker
	for _, ttl := range []time.Duration{0, time.Hour} {
		rep, _ := a.ask(c, wait, mainID, func(r *Request) { r.TTL = ttl })
		if rep.TTL != testCfg().MaxLease {
			t.Errorf("asked %v, granted %v, want %v", ttl, rep.TTL, testCfg().MaxLease)
		}
	}
}

func TestUnknownPair(t *testing.T) {
	c := newCore(t, nil)
	var a asker
	rep, persist := c.Handle(wait, a.req(mainID, func(r *Request) { r.Pair = 5 }))
	wantDeny(t, rep, ReasonUnknownPair)
	if persist || c.Serves(5) {
		t.Error("an unknown pair changed the state")
	}
}

func TestStatus(t *testing.T) {
	c := newCore(t, nil)
	var a asker
	_, starting := c.Status(0)
	if !starting {
		t.Error("not starting at start")
	}
	a.ask(c, wait, spare)
	pairs, starting := c.Status(wait + 300*ms)
	if starting || len(pairs) != 1 {
		t.Fatalf("status %+v starting %v", pairs, starting)
	}
	p := pairs[0]
	if p.Pair != "a1a1a1a1" || p.Holder != "0000000000000002" || p.LeaseMS != 700 || len(p.Nodes) != 1 || p.Nodes[0].AskedMS != 300 {
		t.Errorf("status %+v", p)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []Config{
		{MaxLease: 0, Margin: ms, Window: ms},
		{MaxLease: time.Second, Margin: 0, Window: ms},
		{MaxLease: time.Second, Margin: ms, Window: 2 * time.Second},
	} {
		if c.Validate() == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

func must(r Reply, _ bool) Reply { return r }

// ask has node ask one window before at and again at at (a node that wants
// a lease keeps asking), and returns the second reply.
func (a *asker) ask(c *Core, at time.Duration, node uint64, mut ...func(*Request)) (Reply, bool) {
	c.Handle(at-testCfg().Window, a.req(node, mut...))
	return c.Handle(at, a.req(node, mut...))
}
