package pairing

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net/netip"
	"testing"
	"time"
)

const (
	mainID  uint64 = 0x1111_0000_0000_0001
	spareID uint64 = 0x2222_0000_0000_0002
	thirdID uint64 = 0x3333_0000_0000_0003
)

func testSettings() Settings {
	return Settings{
		ServiceAddress: netip.MustParsePrefix("192.168.1.10/24"),
		Interval:       100 * time.Millisecond, Missed: 5, FailoverTime: 500 * time.Millisecond,
		ConnectionWait: 10 * time.Second, LAN1Interval: 200 * time.Millisecond,
		Recovery: "manual", OnLineLoss: "probe", DatastoreMode: "online",
		ScanInterval: time.Minute, Replication: "sync",
	}
}

func testConfig(t testing.TB, role Role, id uint64, name string) Config {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Role: role, NodeID: id, NodeName: name, Software: "1.4.0", Key: pub}
	if role == RoleMain {
		cfg.Settings = testSettings()
	}
	return cfg
}

// simNode is one unit: its machine and everything it was asked to do.
type simNode struct {
	m         *Machine
	cfg       Config
	acts      []Action
	persisted []Record
	forgot    int
}

type histEntry struct {
	id uint64
	a  Action
}

type envelope struct {
	from uint64
	msg  Message
}

// simNet is a failover line between machines, in the style of the role
// engine's sim: messages go through the codec, a tamper hook can change or
// drop them, and the tap keeps every message as an eavesdropper would.
type simNet struct {
	t      *testing.T
	now    time.Duration
	nodes  map[uint64]*simNode
	order  []uint64
	queue  []envelope
	tap    []Message
	hist   []histEntry // every action of every node, in the order they happened
	tamper func(e *envelope) (drop bool)
}

func newSim(t *testing.T, cfgs ...Config) *simNet {
	n := &simNet{t: t, now: time.Hour, nodes: map[uint64]*simNode{}}
	for _, c := range cfgs {
		m, err := New(c, nil)
		if err != nil {
			t.Fatal(err)
		}
		n.nodes[c.NodeID] = &simNode{m: m, cfg: m.cfg}
		n.order = append(n.order, c.NodeID)
	}
	return n
}

func (n *simNet) node(id uint64) *simNode { return n.nodes[id] }

// step feeds an event to one node and delivers what follows.
func (n *simNet) step(id uint64, ev Event) error {
	acts, err := n.nodes[id].m.Step(n.now, ev)
	n.take(id, acts)
	n.deliver()
	return err
}

func (n *simNet) take(id uint64, acts []Action) {
	nd := n.nodes[id]
	nd.acts = append(nd.acts, acts...)
	for _, a := range acts {
		n.hist = append(n.hist, histEntry{id, a})
		switch a := a.(type) {
		case Send:
			n.queue = append(n.queue, envelope{from: id, msg: a.Msg})
		case Persist:
			nd.persisted = append(nd.persisted, a.Record)
		case Forget:
			nd.forgot++
		}
	}
}

func (n *simNet) deliver() {
	for len(n.queue) > 0 {
		e := n.queue[0]
		n.queue = n.queue[1:]
		b, err := e.msg.MarshalBinary()
		if err != nil {
			n.t.Fatalf("node %016x sent a message it cannot encode: %v", e.from, err)
		}
		if len(b) > MaxLen {
			n.t.Fatalf("%v message of %d bytes", e.msg.Kind, len(b))
		}
		var got Message
		if err := got.UnmarshalBinary(b); err != nil {
			n.t.Fatalf("decode of a %v message: %v", e.msg.Kind, err)
		}
		e.msg = got
		if n.tamper != nil && n.tamper(&e) {
			continue
		}
		n.tap = append(n.tap, e.msg)
		for _, id := range n.order {
			nd := n.nodes[id]
			if id == e.from || (e.msg.To != 0 && e.msg.To != id) {
				continue
			}
			acts, err := nd.m.Step(n.now, Received{Msg: e.msg})
			if err != nil {
				n.t.Fatalf("Received returned an error: %v", err)
			}
			n.take(id, acts)
		}
	}
}

// run advances time by d in 100 ms ticks.
func (n *simNet) run(d time.Duration) {
	for end := n.now + d; n.now < end; {
		n.now += 100 * time.Millisecond
		for _, id := range n.order {
			n.take(id, n.nodes[id].m.Tick(n.now))
		}
		n.deliver()
	}
}

func (n *simNet) wantState(id uint64, want State) {
	n.t.Helper()
	if s := n.nodes[id].m.Status(); s.State != want {
		n.t.Fatalf("node %016x is %v (%s), want %v", id, s.State, s.Reason, want)
	}
}

// begin opens the main's window and returns its code.
func (n *simNet) begin() Code {
	n.t.Helper()
	if err := n.step(mainID, Begin{}); err != nil {
		n.t.Fatal(err)
	}
	c := n.nodes[mainID].m.Status().Code
	if len(c) != 8 {
		n.t.Fatalf("window code %q", c)
	}
	return c
}

// wrongCode returns a code that differs from c.
func wrongCode(c Code) Code {
	var v int
	fmt.Sscanf(string(c), "%d", &v)
	return Code(fmt.Sprintf("%08d", (v+1)%codeSpace))
}

func kinds(msgs []Message) []Kind {
	var k []Kind
	for _, m := range msgs {
		k = append(k, m.Kind)
	}
	return k
}
