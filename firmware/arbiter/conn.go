package arbiter

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Conn drives a Client over UDP: it sends the requests when they fall due,
// reads the replies and reports lease events. The daemon owns it: it calls
// Run in one goroutine and Want/SetInfo from its loop.
type Conn struct {
	conn *net.UDPConn
	to   *net.UDPAddr
	now  func() time.Duration
	wake chan struct{}

	mu     sync.Mutex
	c      *Client
	info   Info
	errors uint64 // datagrams refused
}

// Dial opens a UDP socket to the arbiter at addr ("HOST:PORT"). now is the
// daemon's monotonic clock, the one its engine runs on: lease ends are
// reported on it.
func Dial(addr string, cfg ClientConfig, now func() time.Duration) (*Conn, error) {
	c, err := NewClient(cfg)
	if err != nil {
		return nil, err
	}
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("arbiter: %s: %w", addr, err)
	}
	// Not connected: a multi-homed arbiter listening on a wildcard address
	// may answer from another of its addresses. Replies are authenticated
	// and must echo a nonce, so their source does not matter.
	conn, err := net.ListenUDP("udp", nil)
	if err != nil {
		return nil, fmt.Errorf("arbiter: socket for %s: %w", addr, err)
	}
	return &Conn{conn: conn, to: raddr, now: now, wake: make(chan struct{}, 1), c: c}, nil
}

// Want starts or stops asking for a lease (the engine's WantLease).
func (k *Conn) Want(want bool) {
	k.mu.Lock()
	k.c.Want(k.now(), want)
	k.mu.Unlock()
	k.poke()
}

// SetInfo updates what the next requests say about the node.
func (k *Conn) SetInfo(info Info) {
	k.mu.Lock()
	k.info = info
	k.mu.Unlock()
}

// Status returns the client's view and the count of refused datagrams.
func (k *Conn) Status() (ClientStatus, uint64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.c.Status(), k.errors
}

func (k *Conn) poke() {
	select {
	case k.wake <- struct{}{}:
	default:
	}
}

// Run sends and receives until ctx is done, delivering events in order on
// events. It closes the socket and waits for its reader before it returns.
func (k *Conn) Run(ctx context.Context, events chan<- Event) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer k.conn.Close()
	// Events from both goroutines go through one channel so that their
	// order is the order they happened in.
	send := func(ev Event) bool {
		select {
		case events <- ev:
			return true
		case <-ctx.Done():
			return false
		}
	}
	var readErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer cancel()
		buf := make([]byte, 512)
		for {
			n, _, err := k.conn.ReadFromUDP(buf)
			if err != nil {
				if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
					var ne net.Error
					if errors.As(err, &ne) && !ne.Timeout() {
						// ICMP port unreachable and the like: the arbiter
						// is down; the client's timer reports it.
						continue
					}
					readErr = err
				}
				return
			}
			k.mu.Lock()
			ev, ok, err := k.c.Receive(k.now(), buf[:n])
			if err != nil {
				k.errors++
			}
			k.mu.Unlock()
			if ok && !send(ev) {
				return
			}
			k.poke()
		}
	}()
	timer := time.NewTimer(0)
	defer timer.Stop()
	var buf []byte
	for {
		select {
		case <-ctx.Done():
			k.conn.Close()
			wg.Wait()
			return readErr
		case <-timer.C:
		case <-k.wake:
		}
		now := k.now()
		k.mu.Lock()
		out, ok, err := k.c.Poll(now, k.info, buf[:0])
		ev, lost := k.c.Tick(now)
		wait := time.Duration(0)
		if k.c.Wanting() || ok {
			wait = max(k.c.Next()-now, time.Millisecond)
			wait = min(wait, 10*time.Millisecond+k.c.cfg.Retry) // Tick's resolution
		}
		k.mu.Unlock()
		if err != nil {
			return err
		}
		if ok {
			buf = out
			// A send error (no route, port unreachable) is a lost
			// request; the timer asks again.
			k.conn.WriteToUDP(out, k.to)
		}
		if lost && !send(ev) {
			continue
		}
		if wait > 0 {
			timer.Reset(wait)
		}
	}
}
