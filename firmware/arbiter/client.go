package arbiter

import (
	"crypto/rand"
	"fmt"
	"io"
	"time"
)

// ClientConfig configures a node's lease client.
type ClientConfig struct {
	Key  *Key   // the pair's arbiter key (NewKey(DeriveKey(pairKey)))
	Node uint64 // this node's id
	Mode Mode
	// Lease is the lease asked for (default DefaultLease; a node sets its
	// failover-time + LeaseOverFailover).
	Lease time.Duration
	// Renew is how often a holder renews (default Lease/4).
	Renew time.Duration
	// Retry is how often a node without a lease asks (default 100 ms; also
	// the resend when a request is lost). It must stay well under the
	// arbiter's decision window.
	Retry time.Duration
	// Unreachable is how long a node that wants a lease may go without any
	// reply before EventUnreachable (default Lease).
	Unreachable time.Duration
	// Rand is the source of nonces (default crypto/rand).
	Rand io.Reader
}

func (c *ClientConfig) defaults() error {
	if c.Key == nil || c.Node == 0 || c.Mode == modeInvalid || c.Mode > ModeSpare {
		return fmt.Errorf("arbiter: client needs a key, a node id and a mode")
	}
	if c.Lease <= 0 {
		c.Lease = DefaultLease
	}
	if c.Renew <= 0 {
		c.Renew = c.Lease / 4
	}
	if c.Retry <= 0 {
		c.Retry = 100 * time.Millisecond
	}
	if c.Unreachable <= 0 {
		c.Unreachable = c.Lease
	}
	if c.Rand == nil {
		c.Rand = rand.Reader
	}
	if c.Renew >= c.Lease-ReleaseMargin {
		return fmt.Errorf("arbiter: renew %v must be well under the lease %v", c.Renew, c.Lease)
	}
	return nil
}

// Info is what a request says about the node, taken from the engine.
type Info struct {
	Role       Role
	Data       Data
	Epoch      uint64
	Generation uint64
	History    uint64
	PeerHeard  bool
}

// EventKind is the kind of a lease event.
type EventKind uint8

// Lease events.
const (
	eventInvalid EventKind = iota // invalid
	// EventGranted: the node holds a lease until Event.Until, measured on
	// the node's monotonic clock from the moment the request was sent.
	EventGranted // granted
	// EventDenied: the arbiter answered without granting; a lease held
	// before stays valid until its end (Event.Until, zero when none).
	EventDenied // denied
	// EventUnreachable: no reply for ClientConfig.Unreachable while the
	// node wanted a lease.
	EventUnreachable // unreachable
)

// Event is a lease event for the engine.
type Event struct {
	Kind       EventKind
	Until      time.Duration // end of this node's lease, on the clock of the client's now
	Holder     uint64        // the holder the arbiter names (0: nobody)
	Epoch      uint64
	Reason     Reason
	RetryAfter time.Duration
}

// maxOutstanding bounds the requests whose replies are still accepted.
const maxOutstanding = 32

type sent struct {
	nonce [16]byte
	at    time.Duration
}

// Client is the pure lease client of a node: it says when to send which
// request and turns replies into events. Time is an input (the daemon's
// monotonic clock). It is not safe for concurrent use; see Conn.
type Client struct {
	cfg     ClientConfig
	want    bool
	release bool // a release is to be sent
	counter uint64

	out  []sent // requests sent, oldest first
	next time.Duration

	until   time.Duration // our lease (0: none)
	holder  uint64
	epoch   uint64
	reason  Reason
	replied time.Duration // the last reply, or when wanting began
	lost    bool          // EventUnreachable was reported and no reply came since
}

// NewClient returns a lease client that does not want a lease yet.
func NewClient(cfg ClientConfig) (*Client, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	return &Client{cfg: cfg}, nil
}

// Want starts or stops asking for a lease. Stopping gives a lease still
// held back to the arbiter (the caller has released the address before).
func (c *Client) Want(now time.Duration, want bool) {
	if want == c.want {
		return
	}
	c.want = want
	if want {
		c.replied, c.lost, c.next = now, false, now
		return
	}
	if c.until > now {
		c.release = true
	}
	c.until = 0
}

// Wanting reports whether the client asks for a lease.
func (c *Client) Wanting() bool { return c.want }

// Next returns when Poll has something to send (meaningless when it has
// nothing to do: not wanting and no release pending).
func (c *Client) Next() time.Duration {
	if c.release {
		return 0
	}
	return c.next
}

// Poll returns the request to send now, appended to b, if one is due.
func (c *Client) Poll(now time.Duration, info Info, b []byte) ([]byte, bool, error) {
	typ := RequestAcquire
	switch {
	case c.release:
		typ = RequestRelease
	case c.want && now >= c.next:
	default:
		return b, false, nil
	}
	var nonce [16]byte
	if _, err := io.ReadFull(c.cfg.Rand, nonce[:]); err != nil {
		return b, false, fmt.Errorf("arbiter: nonce: %w", err)
	}
	c.counter++
	req := Request{
		Type: typ, Pair: c.cfg.Key.PairID(), Node: c.cfg.Node, Counter: c.counter, Nonce: nonce,
		Epoch: info.Epoch, Generation: info.Generation, History: info.History, TTL: c.cfg.Lease,
		Mode: c.cfg.Mode, Role: info.Role, Data: info.Data, PeerHeard: info.PeerHeard,
	}
	if req.Role == roleInvalid {
		req.Role = RoleStarting
	}
	if req.Data == dataInvalid {
		req.Data = DataInconsistent
	}
	out, err := req.Append(b, c.cfg.Key)
	if err != nil {
		return b, false, err
	}
	c.out = append(c.out, sent{nonce: nonce, at: now})
	if len(c.out) > maxOutstanding {
		c.out = c.out[1:]
	}
	if typ == RequestRelease {
		c.release = false
		return out, true, nil
	}
	// Renew early enough; ask again soon when the reply may be lost.
	if c.until-now > c.cfg.Renew+c.cfg.Retry {
		c.next = now + c.cfg.Renew
	} else {
		c.next = now + c.cfg.Retry
	}
	return out, true, nil
}

// Receive handles a datagram from the arbiter. It reports an event when
// the datagram is an authenticated reply to one of this client's recent
// requests; anything else is an error (count it, never act on it).
func (c *Client) Receive(now time.Duration, b []byte) (Event, bool, error) {
	var rep Reply
	if err := DecodeReply(b, c.cfg.Key, &rep); err != nil {
		return Event{}, false, err
	}
	if rep.Node != c.cfg.Node {
		return Event{}, false, fmt.Errorf("arbiter: reply for node %016x", rep.Node)
	}
	i := -1
	for j, s := range c.out {
		if s.nonce == rep.Nonce {
			i = j
		}
	}
	if i < 0 {
		return Event{}, false, fmt.Errorf("arbiter: reply to no outstanding request (replayed or late)")
	}
	at := c.out[i].at
	c.out = append(c.out[:i], c.out[i+1:]...)
	c.replied, c.lost = now, false
	c.holder, c.epoch, c.reason = rep.Holder, rep.Epoch, rep.Reason
	if rep.Floor > c.counter+1 {
		// The arbiter restarted or this node did: go on from its floor.
		c.counter = rep.Floor - 1
	}
	if !c.want {
		if rep.Type == ReplyGrant {
			c.release = true
		}
		return Event{}, false, nil
	}
	if rep.Type == ReplyGrant {
		// Measured from the send: the node's lease always ends before the
		// arbiter's.
		if until := at + rep.TTL; until > c.until {
			c.until = until
		}
		if c.until-now > c.cfg.Renew+c.cfg.Retry {
			c.next = max(c.next, now+c.cfg.Renew)
		}
		return Event{Kind: EventGranted, Until: c.until, Holder: rep.Holder, Epoch: rep.Epoch}, true, nil
	}
	wait := c.cfg.Retry
	if rep.RetryAfter < wait {
		wait = max(rep.RetryAfter, c.cfg.Retry/10)
	}
	c.next = now + wait
	until := c.until
	if until <= now {
		until = 0
	}
	return Event{Kind: EventDenied, Until: until, Holder: rep.Holder, Epoch: rep.Epoch,
		Reason: rep.Reason, RetryAfter: rep.RetryAfter}, true, nil
}

// Tick reports EventUnreachable once when the client has wanted a lease
// and heard no reply for ClientConfig.Unreachable.
func (c *Client) Tick(now time.Duration) (Event, bool) {
	if !c.want || c.lost || now-c.replied < c.cfg.Unreachable {
		return Event{}, false
	}
	c.lost = true
	until := c.until
	if until <= now {
		until = 0
	}
	return Event{Kind: EventUnreachable, Until: until, Holder: c.holder, Epoch: c.epoch}, true
}

// ClientStatus is the client's view, for logs and tests.
type ClientStatus struct {
	Wanting     bool
	Until       time.Duration
	Holder      uint64
	Epoch       uint64
	Reason      Reason
	Unreachable bool
}

// Status returns the client's view.
func (c *Client) Status() ClientStatus {
	return ClientStatus{Wanting: c.want, Until: c.until, Holder: c.holder, Epoch: c.epoch, Reason: c.reason, Unreachable: c.lost}
}
