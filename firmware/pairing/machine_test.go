package pairing

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func pairedSim(t *testing.T) *simNet {
	n := newSim(t, testConfig(t, RoleMain, mainID, "main-a"), testConfig(t, RoleSpare, spareID, "spare-b"))
	code := n.begin()
	if err := n.step(spareID, Join{Code: Code(code.String())}); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestPairing(t *testing.T) {
	n := pairedSim(t)
	n.wantState(mainID, StatePending)
	n.wantState(spareID, StatePending)
	if got := kinds(n.tap); !slices.Equal(got, []Kind{KindHello, KindShare, KindReply, KindFinish}) {
		t.Fatalf("messages %v", got)
	}
	ms, ss := n.node(mainID).m.Status(), n.node(spareID).m.Status()
	if ms.Check == "" || len(ms.Check) != 6 || ms.Check != ss.Check {
		t.Fatalf("check numbers %q and %q", ms.Check, ss.Check)
	}
	if ms.Peer.NodeID != spareID || ms.Peer.Name != "spare-b" || ms.Peer.Software != "1.4.0" {
		t.Fatalf("main sees %+v", ms.Peer)
	}
	if ss.Peer.NodeID != mainID || ss.Peer.Name != "main-a" {
		t.Fatalf("spare sees %+v", ss.Peer)
	}
	if key := Compare(*ss.Settings, testSettings()); key != "" {
		t.Fatalf("spare adopts settings differing in %s", key)
	}
	if ms.Code != "" {
		t.Fatal("the code is still shown after the exchange")
	}

	// One accept persists nothing.
	if err := n.step(mainID, Accept{}); err != nil {
		t.Fatal(err)
	}
	n.wantState(mainID, StatePending)
	if len(n.node(mainID).persisted)+len(n.node(spareID).persisted) != 0 {
		t.Fatal("persisted before both accepted")
	}
	if !n.node(spareID).m.Status().PeerAccepted {
		t.Fatal("the spare did not learn of the main's accept")
	}
	if err := n.step(spareID, Accept{}); err != nil {
		t.Fatal(err)
	}
	n.wantState(mainID, StatePaired)
	n.wantState(spareID, StatePaired)

	mr, sr := n.node(mainID).persisted, n.node(spareID).persisted
	if len(mr) != 1 || len(sr) != 1 {
		t.Fatalf("persisted %d and %d records", len(mr), len(sr))
	}
	if mr[0].PairKey != sr[0].PairKey || mr[0].PairKey == ([PairKeyLen]byte{}) {
		t.Fatal("pair keys differ or are zero")
	}
	if !bytes.Equal(mr[0].Peer.Key, n.node(spareID).cfg.Key) || !bytes.Equal(sr[0].Peer.Key, n.node(mainID).cfg.Key) {
		t.Fatal("identity keys not pinned crosswise")
	}
	if mr[0].Role != RoleMain || sr[0].Role != RoleSpare || sr[0].Peer.NodeID != mainID || mr[0].Peer.NodeID != spareID {
		t.Fatalf("records %+v / %+v", mr[0], sr[0])
	}
	if Compare(sr[0].Settings, testSettings()) != "" {
		t.Fatal("the spare's record lacks the main's settings")
	}
	// A record survives its encoding, and a machine started with it is paired.
	b, err := sr[0].MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var back Record
	if err := back.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	m, err := New(n.node(spareID).cfg, &back)
	if err != nil || m.State() != StatePaired || m.Status().Peer.NodeID != mainID {
		t.Fatalf("restart from the record: %v, %v", err, m)
	}
}

// TestPersistBeforeAccept: a node persists before it sends the accept that
// lets its peer complete, and reports the state change after both.
func TestPersistBeforeAccept(t *testing.T) {
	for _, first := range []uint64{mainID, spareID} {
		n := pairedSim(t)
		second := spareID + mainID - first
		n.step(first, Accept{})
		n.node(second).acts = nil
		n.step(second, Accept{})
		var order []string
		for _, a := range n.node(second).acts {
			switch a := a.(type) {
			case Persist:
				order = append(order, "persist")
			case Send:
				order = append(order, "send-"+a.Msg.Kind.String())
			case StateChanged:
				order = append(order, "state-"+a.State.String())
			}
		}
		if want := []string{"persist", "send-accept", "state-paired"}; !slices.Equal(order, want) {
			t.Errorf("accepting second on %016x: %v, want %v", second, order, want)
		}
		n.wantState(first, StatePaired)
	}
}

func TestWrongCode(t *testing.T) {
	n := newSim(t, testConfig(t, RoleMain, mainID, "main-a"), testConfig(t, RoleSpare, spareID, "spare-b"))
	code := n.begin()
	n.step(spareID, Join{Code: wrongCode(code)})
	n.wantState(mainID, StateUnpaired)
	n.wantState(spareID, StateUnpaired)
	ms := n.node(mainID).m.Status()
	if !strings.Contains(ms.Reason, "wrong-code") || ms.Code != "" {
		t.Fatalf("main: reason %q, code %q", ms.Reason, ms.Code)
	}
	if !strings.Contains(n.node(spareID).m.Status().Reason, "wrong-code") {
		t.Fatalf("spare: %q", n.node(spareID).m.Status().Reason)
	}
	// After a bad confirmation the main sends only an Abort, which carries
	// nothing derived from the exchange's key.
	last := n.tap[len(n.tap)-1]
	if last.Kind != KindAbort || last.Tag != nil || last.Share != nil {
		t.Fatalf("main answered a wrong code with %+v", last)
	}
	// The burned code does not work any more: the window is closed.
	tapped := len(n.tap)
	n.step(spareID, Join{Code: code})
	n.run(3 * time.Second)
	for _, m := range n.tap[tapped:] {
		if m.Kind != KindHello {
			t.Fatalf("a closed window answered with %v", m.Kind)
		}
	}
	n.wantState(spareID, StateJoining)
	n.run(5 * time.Minute)
	n.wantState(spareID, StateUnpaired)
	if len(n.node(mainID).persisted)+len(n.node(spareID).persisted) != 0 {
		t.Fatal("a wrong code persisted something")
	}
}

// TestThirdUnit: a third unit on the line cannot use a window meant for
// the spare: without the code it burns it; with the spare's messages
// relayed under its own node id it cannot confirm; and while the main is
// busy with the spare its hellos go unanswered.
func TestThirdUnit(t *testing.T) {
	t.Run("without the code", func(t *testing.T) {
		n := newSim(t, testConfig(t, RoleMain, mainID, "main-a"), testConfig(t, RoleSpare, thirdID, "intruder"))
		code := n.begin()
		n.step(thirdID, Join{Code: wrongCode(code)})
		n.wantState(mainID, StateUnpaired)
		n.wantState(thirdID, StateUnpaired)
	})
	t.Run("relaying the spare under another node id", func(t *testing.T) {
		n := newSim(t, testConfig(t, RoleMain, mainID, "main-a"), testConfig(t, RoleSpare, spareID, "spare-b"))
		n.tamper = func(e *envelope) bool {
			switch {
			case e.from == spareID:
				e.msg.From = thirdID // the main sees node 3
			case e.msg.To == thirdID:
				e.msg.To = spareID
			}
			return false
		}
		code := n.begin()
		n.step(spareID, Join{Code: code})
		n.wantState(mainID, StateUnpaired)
		n.wantState(spareID, StateUnpaired)
		if r := n.node(mainID).m.Status().Reason; !strings.Contains(r, "wrong-code") {
			t.Fatalf("main: %q", r)
		}
	})
	t.Run("while the main is busy", func(t *testing.T) {
		third := testConfig(t, RoleSpare, thirdID, "intruder")
		n := newSim(t, testConfig(t, RoleMain, mainID, "main-a"), testConfig(t, RoleSpare, spareID, "spare-b"), third)
		code := n.begin()
		n.step(spareID, Join{Code: code})
		n.wantState(mainID, StatePending)
		n.step(thirdID, Join{Code: code})
		n.run(5 * time.Second)
		n.wantState(thirdID, StateJoining)
		for _, m := range n.tap {
			if m.To == thirdID {
				t.Fatalf("the main answered the third unit with %v", m.Kind)
			}
		}
		n.step(mainID, Accept{})
		n.step(spareID, Accept{})
		n.wantState(mainID, StatePaired)
		if p := n.node(mainID).persisted[0].Peer.NodeID; p != spareID {
			t.Fatalf("main paired with %016x", p)
		}
	})
}

// TestManInTheMiddle: changing any part of the exchange makes the key
// confirmation fail; nothing is persisted and the code is burned.
func TestManInTheMiddle(t *testing.T) {
	flipLast := func(b []byte) { b[len(b)-1] ^= 1 }
	for name, c := range map[string]struct {
		kind  Kind
		edit  func(*Message)
		state State // where the main ends
	}{
		"main's settings": {KindShare, func(m *Message) {
			i := bytes.Index(m.Share, []byte("192.168.1.10/24"))
			m.Share[i+10] = '9' // 192.168.1.19
		}, StateUnpaired},
		"main's share": {KindShare, func(m *Message) { m.Share[5] ^= 0x20 }, StateUnpaired},
		"spare's key":  {KindReply, func(m *Message) { flipLast(m.Share) }, StateUnpaired},
		"spare's tag":  {KindReply, func(m *Message) { flipLast(m.Tag) }, StateUnpaired},
		// The nonce is changed on the way to the spare and changed back on
		// the way to the main, so that the main takes the reply as its own.
		"main's nonce":  {kindInvalid, nil, StateUnpaired},
		"main's finish": {KindFinish, func(m *Message) { flipLast(m.Tag) }, StatePending},
	} {
		t.Run(name, func(t *testing.T) {
			n := newSim(t, testConfig(t, RoleMain, mainID, "main-a"), testConfig(t, RoleSpare, spareID, "spare-b"))
			n.tamper = func(e *envelope) bool {
				switch {
				case c.edit == nil && e.msg.Kind != KindHello:
					e.msg.NonceM[0] ^= 1
				case e.msg.Kind == c.kind:
					c.edit(&e.msg)
				}
				return false
			}
			code := n.begin()
			n.step(spareID, Join{Code: code})
			n.run(time.Second)
			n.wantState(spareID, StateUnpaired)
			n.wantState(mainID, c.state)
			if c.state == StatePending {
				// The main confirmed the spare; the spare did not confirm
				// the main and refuses. Accepting on the main is useless.
				n.step(mainID, Accept{})
				n.run(6 * time.Minute)
				n.wantState(mainID, StateUnpaired)
			}
			if len(n.node(mainID).persisted)+len(n.node(spareID).persisted) != 0 {
				t.Fatal("a tampered exchange persisted something")
			}
		})
	}
}

func TestExpiry(t *testing.T) {
	t.Run("window", func(t *testing.T) {
		n := newSim(t, testConfig(t, RoleMain, mainID, "main-a"))
		n.begin()
		n.run(5*time.Minute - time.Second)
		n.wantState(mainID, StateWindow)
		n.run(time.Second)
		n.wantState(mainID, StateUnpaired)
		if s := n.node(mainID).m.Status(); s.Code != "" || !strings.Contains(s.Reason, "expired") {
			t.Fatalf("after expiry: %+v", s)
		}
	})
	t.Run("acceptance", func(t *testing.T) {
		n := pairedSim(t)
		n.step(spareID, Accept{})
		n.run(5 * time.Minute)
		n.wantState(mainID, StateUnpaired)
		n.wantState(spareID, StateUnpaired)
		if len(n.node(mainID).persisted)+len(n.node(spareID).persisted) != 0 {
			t.Fatal("persisted without both accepts")
		}
	})
	t.Run("lost accept", func(t *testing.T) {
		// The spare completes, but its accept never reaches the main. The
		// main times out and says so; the spare forgets what it stored.
		n := pairedSim(t)
		n.tamper = func(e *envelope) bool { return e.from == spareID && e.msg.Kind == KindAccept }
		n.step(mainID, Accept{})
		n.step(spareID, Accept{})
		n.wantState(spareID, StatePaired)
		n.wantState(mainID, StatePending)
		n.run(5 * time.Minute)
		n.wantState(mainID, StateUnpaired)
		n.wantState(spareID, StateUnpaired)
		if n.node(spareID).forgot != 1 {
			t.Fatalf("spare forgot %d times", n.node(spareID).forgot)
		}
	})
	t.Run("one lost accept is repeated", func(t *testing.T) {
		n := pairedSim(t)
		drop := true
		n.tamper = func(e *envelope) bool {
			if e.from == spareID && e.msg.Kind == KindAccept && drop {
				drop = false
				return true
			}
			return false
		}
		n.step(mainID, Accept{})
		n.step(spareID, Accept{})
		n.run(3 * time.Second)
		n.wantState(mainID, StatePaired)
		n.wantState(spareID, StatePaired)
	})
}

func TestRateLimit(t *testing.T) {
	cfg := testConfig(t, RoleMain, mainID, "main-a")
	m, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Hour
	if _, err := m.Step(now, Begin{}); err != nil {
		t.Fatal(err)
	}
	shares := 0
	hello := func(from uint64) {
		acts, _ := m.Step(now, Received{Msg: Message{Kind: KindHello, From: from, NonceS: [16]byte{byte(from)}}})
		for _, a := range acts {
			if s, ok := a.(Send); ok && s.Msg.Kind == KindShare {
				shares++
			}
		}
	}
	// A flood of hellos from many node ids, every 100 ms, none completing.
	for i := uint64(1); m.State() == StateWindow; i++ {
		hello(0x9000 + i)
		now += 100 * time.Millisecond
		m.Tick(now)
		if i > 10000 {
			t.Fatal("the window never closed")
		}
	}
	if shares != 5 {
		t.Fatalf("%d exchanges started, want MaxExchanges = 5", shares)
	}
	if r := m.Status().Reason; !strings.Contains(r, "too-many-attempts") {
		t.Fatalf("reason %q", r)
	}
	// Exchanges start no faster than MinGap (2 s) and each waits 10 s:
	// five take about 50 s, not 0.5 s.
	if elapsed := now - time.Hour; elapsed < 50*time.Second {
		t.Fatalf("window closed after %v", elapsed)
	}
}

func TestRejectAndCancel(t *testing.T) {
	n := pairedSim(t)
	n.step(mainID, Accept{})
	n.step(spareID, Reject{})
	n.wantState(mainID, StateUnpaired)
	n.wantState(spareID, StateUnpaired)
	if r := n.node(mainID).m.Status().Reason; !strings.Contains(r, "ended the pairing (rejected)") {
		t.Fatalf("main: %q", r)
	}

	// A forged (unauthenticated) abort or a reject with a wrong tag does
	// not undo a confirmed exchange.
	n = pairedSim(t)
	sent := n.tap[len(n.tap)-1] // the finish
	forged := Message{Kind: KindAbort, From: mainID, To: spareID, NonceS: sent.NonceS, NonceM: sent.NonceM, Reason: ReasonWrongCode}
	n.queue = append(n.queue, envelope{from: mainID, msg: forged})
	forged = Message{Kind: KindReject, From: mainID, To: spareID, NonceS: sent.NonceS, NonceM: sent.NonceM, Reason: ReasonRejected, Tag: make([]byte, 32)}
	n.queue = append(n.queue, envelope{from: mainID, msg: forged})
	n.deliver()
	n.wantState(spareID, StatePending)

	if err := n.step(mainID, Cancel{}); err != nil {
		t.Fatal(err)
	}
	n.wantState(spareID, StateUnpaired)
}

func TestCommandsInWrongState(t *testing.T) {
	n := newSim(t, testConfig(t, RoleMain, mainID, "main-a"), testConfig(t, RoleSpare, spareID, "spare-b"))
	for _, c := range []struct {
		id   uint64
		ev   Event
		want error
	}{
		{spareID, Begin{}, ErrRole},
		{mainID, Join{Code: "12345678"}, ErrRole},
		{mainID, Accept{}, ErrState},
		{mainID, Unpair{}, ErrState},
		{spareID, Join{Code: "1234-567"}, nil},
	} {
		err := n.step(c.id, c.ev)
		if c.want == nil {
			if err == nil {
				t.Errorf("%T on %016x: no error", c.ev, c.id)
			}
		} else if !errors.Is(err, c.want) {
			t.Errorf("%T on %016x: %v, want %v", c.ev, c.id, err, c.want)
		}
	}
	n.begin()
	if err := n.step(mainID, Begin{}); !errors.Is(err, ErrState) {
		t.Errorf("second begin: %v", err)
	}
}

func TestUnpairAndPairAgain(t *testing.T) {
	n := pairedSim(t)
	n.step(mainID, Accept{})
	n.step(spareID, Accept{})
	old := n.node(mainID).persisted[0].PairKey
	if err := n.step(mainID, Begin{}); !errors.Is(err, ErrState) || !strings.Contains(err.Error(), "unpair first") {
		t.Fatalf("begin while paired: %v", err)
	}
	if err := n.step(mainID, Unpair{}); err != nil {
		t.Fatal(err)
	}
	if n.node(mainID).forgot != 1 {
		t.Fatal("unpair did not forget the record")
	}
	// A new unit replaces the spare.
	fresh := testConfig(t, RoleSpare, thirdID, "spare-c")
	m, _ := New(fresh, nil)
	n.nodes[thirdID] = &simNode{m: m, cfg: m.cfg}
	n.order = append(n.order, thirdID)
	delete(n.nodes, spareID)
	n.order = slices.DeleteFunc(n.order, func(id uint64) bool { return id == spareID })
	code := n.begin()
	n.step(thirdID, Join{Code: code})
	n.step(mainID, Accept{})
	n.step(thirdID, Accept{})
	n.wantState(mainID, StatePaired)
	rec := n.node(mainID).persisted[1]
	if rec.Peer.NodeID != thirdID || rec.PairKey == old {
		t.Fatalf("re-paired record %+v", rec.Peer)
	}
}

func TestPersistFailed(t *testing.T) {
	n := pairedSim(t)
	n.step(mainID, Accept{})
	n.step(spareID, Accept{})
	n.step(spareID, PersistFailed{Err: errors.New("disk full")})
	n.wantState(spareID, StateUnpaired)
	n.wantState(mainID, StateUnpaired)
	if n.node(mainID).forgot != 1 {
		t.Fatal("the main kept a pairing its peer could not store")
	}
}

func TestNewWithForeignRecord(t *testing.T) {
	cfg := testConfig(t, RoleSpare, spareID, "spare-b")
	rec := &Record{Role: RoleSpare, NodeID: thirdID, Peer: Peer{NodeID: mainID}}
	if _, err := New(cfg, rec); err == nil {
		t.Fatal("a record of another node was accepted")
	}
}

// TestStrayMessages: messages that do not belong to the window's exchange
// change nothing: reflections, hellos addressed to someone, and aborts,
// replies and finishes with other nonces or from other nodes.
func TestStrayMessages(t *testing.T) {
	cfg := testConfig(t, RoleMain, mainID, "main-a")
	m, _ := New(cfg, nil)
	now := time.Hour
	m.Step(now, Begin{})
	hello := Message{Kind: KindHello, From: spareID, NonceS: [16]byte{1}}
	acts, _ := m.Step(now, Received{Msg: hello})
	var share Message
	for _, a := range acts {
		if s, ok := a.(Send); ok {
			share = s.Msg
		}
	}
	if share.Kind != KindShare {
		t.Fatalf("no share: %v", acts)
	}
	other := share
	other.NonceM[0] ^= 1
	for name, msg := range map[string]Message{
		"reflected hello":  {Kind: KindHello, From: mainID, NonceS: [16]byte{2}},
		"addressed hello":  {Kind: KindHello, From: thirdID, To: spareID, NonceS: [16]byte{2}},
		"abort, other":     {Kind: KindAbort, From: thirdID, To: mainID, NonceS: share.NonceS, NonceM: share.NonceM, Reason: ReasonCancelled},
		"abort, nonce":     {Kind: KindAbort, From: spareID, To: mainID, NonceS: other.NonceS, NonceM: other.NonceM, Reason: ReasonCancelled},
		"reply, other":     {Kind: KindReply, From: thirdID, To: mainID, NonceS: share.NonceS, NonceM: share.NonceM, Share: share.Share, Tag: make([]byte, 64)},
		"abort, not to us": {Kind: KindAbort, From: spareID, To: thirdID, NonceS: share.NonceS, NonceM: share.NonceM, Reason: ReasonCancelled},
	} {
		acts, err := m.Step(now, Received{Msg: msg})
		if err != nil || m.State() != StateWindow || len(acts) != 0 {
			t.Fatalf("%s: state %v, actions %v, err %v", name, m.State(), acts, err)
		}
	}
	// The real spare's abort does end the window.
	m.Step(now, Received{Msg: Message{Kind: KindAbort, From: spareID, To: mainID, NonceS: share.NonceS, NonceM: share.NonceM, Reason: ReasonCancelled}})
	if m.State() != StateUnpaired || m.Status().Code != "" {
		t.Fatalf("after the spare's abort: %v", m.Status())
	}
}

// TestNoAcceptPingPong: two paired nodes on a line slower than Retry do
// not keep answering each other's accepts.
func TestNoAcceptPingPong(t *testing.T) {
	n := pairedSim(t)
	n.step(mainID, Accept{})
	n.step(spareID, Accept{})
	n.wantState(spareID, StatePaired)
	// Replay the spare's last accept to the main again and again, each
	// time after more than Retry, as a slow line would deliver repeats.
	var acc Message
	for _, m := range n.tap {
		if m.Kind == KindAccept && m.From == spareID {
			acc = m
		}
	}
	before := len(n.tap)
	for range 20 {
		n.now += 2 * time.Second
		n.queue = append(n.queue, envelope{from: spareID, msg: acc})
		n.deliver()
	}
	answers := 0
	for _, m := range n.tap[before:] {
		if m.From == mainID {
			answers++
		}
	}
	if answers == 0 || answers > maxAnswers {
		t.Fatalf("the main answered %d repeated accepts, want 1..%d", answers, maxAnswers)
	}
}
