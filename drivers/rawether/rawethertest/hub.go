// Package rawethertest provides an in-memory Ethernet hub whose ports
// implement rawether.Conn, for engine and daemon unit tests: cut a port's
// link, drop a share of the frames, delay them.
//
// The hub uses only channels and time.AfterFunc, so tests may run it inside
// a testing/synctest bubble (create the hub inside the bubble).
package rawethertest

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/pairguard/pairguard/drivers/rawether"
)

// QueueLen is the number of frames a port buffers before it drops, like a
// NIC ring.
const QueueLen = 256

// Hub is an in-memory Ethernet segment. Every port hears the broadcasts
// and the unicast frames addressed to its MAC from the other ports.
type Hub struct {
	mu       sync.Mutex
	ports    map[string]*Port
	order    []*Port // in creation order, so that drops are reproducible
	drop     int     // percent
	delay    time.Duration
	rng      *rand.Rand
	watchers []*watcher
}

// NewHub returns an empty hub. Random drops are reproducible: the hub's
// generator has a fixed seed.
func NewHub() *Hub {
	return &Hub{ports: make(map[string]*Port), rng: rand.New(rand.NewPCG(1, 1))}
}

// Port adds a port named name with address mac and returns it. The name
// plays the role of the interface name (for Cut, Restore and WatchLink).
// It panics if the name is taken or mac is not 6 bytes: a test bug.
func (h *Hub) Port(name string, mac net.HardwareAddr) *Port {
	if len(mac) != 6 {
		panic(fmt.Sprintf("rawethertest: port %s: bad MAC %q", name, mac))
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.ports[name]; ok {
		panic(fmt.Sprintf("rawethertest: port %s exists", name))
	}
	p := &Port{
		hub:    h,
		name:   name,
		mac:    bytes.Clone(mac),
		queue:  make(chan frame, QueueLen),
		closed: make(chan struct{}),
		dl:     newDeadline(),
	}
	h.ports[name] = p
	h.order = append(h.order, p)
	return p
}

// Cut takes the link of port name down: it neither sends nor receives
// until Restore. Frames in flight to it are lost. Watchers see it down.
func (h *Hub) Cut(name string) { h.setCut(name, true) }

// Restore brings the link of port name up again.
func (h *Hub) Restore(name string) { h.setCut(name, false) }

func (h *Hub) setCut(name string, cut bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	p, ok := h.ports[name]
	if !ok {
		panic(fmt.Sprintf("rawethertest: no port %s", name))
	}
	if p.cut == cut {
		return
	}
	p.cut = cut
	for _, w := range h.watchers {
		if w.name == name {
			w.push(rawether.LinkEvent{Name: name, Up: !cut})
		}
	}
}

// Drop makes the hub lose percent (0 to 100) of the frames it delivers,
// each delivery decided on its own.
func (h *Hub) Drop(percent int) {
	h.mu.Lock()
	h.drop = min(max(percent, 0), 100)
	h.mu.Unlock()
}

// Delay makes the hub deliver frames after d (0: at once, in Send).
func (h *Hub) Delay(d time.Duration) {
	h.mu.Lock()
	h.delay = d
	h.mu.Unlock()
}

// WatchLink reports the state of port name as Cut and Restore change it,
// like rawether.WatchLink: first the current state, then every change,
// until ctx is done. A port that does not exist (yet) is down.
func (h *Hub) WatchLink(ctx context.Context, name string) (<-chan rawether.LinkEvent, error) {
	h.mu.Lock()
	p, ok := h.ports[name]
	w := &watcher{name: name, signal: make(chan struct{}, 1)}
	w.push(rawether.LinkEvent{Name: name, Up: ok && !p.cut})
	h.watchers = append(h.watchers, w)
	h.mu.Unlock()

	out := make(chan rawether.LinkEvent)
	go func() {
		defer close(out)
		defer h.unwatch(w)
		for {
			select {
			case <-w.signal:
			case <-ctx.Done():
				return
			}
			for _, e := range w.take() {
				select {
				case out <- e:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

func (h *Hub) unwatch(w *watcher) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, x := range h.watchers {
		if x == w {
			h.watchers = append(h.watchers[:i], h.watchers[i+1:]...)
			return
		}
	}
}

// watcher queues the link events of one WatchLink call.
type watcher struct {
	name    string
	mu      sync.Mutex
	pending []rawether.LinkEvent
	signal  chan struct{}
}

func (w *watcher) push(e rawether.LinkEvent) {
	w.mu.Lock()
	w.pending = append(w.pending, e)
	w.mu.Unlock()
	select {
	case w.signal <- struct{}{}:
	default:
	}
}

func (w *watcher) take() []rawether.LinkEvent {
	w.mu.Lock()
	defer w.mu.Unlock()
	e := w.pending
	w.pending = nil
	return e
}

// send delivers a frame from port src to the ports it is addressed to.
func (h *Hub) send(src *Port, dst net.HardwareAddr, payload []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if src.cut {
		return
	}
	group := dst[0]&1 != 0 // broadcast or multicast
	for _, p := range h.order {
		if p == src || (!group && !bytes.Equal(p.mac, dst)) {
			continue
		}
		if h.drop > 0 && h.rng.IntN(100) < h.drop {
			continue
		}
		f := frame{src: bytes.Clone(src.mac), payload: bytes.Clone(payload)}
		if h.delay > 0 {
			time.AfterFunc(h.delay, func() { h.deliver(p, f) })
			continue
		}
		p.enqueue(f)
	}
}

func (h *Hub) deliver(p *Port, f frame) {
	h.mu.Lock()
	defer h.mu.Unlock()
	p.enqueue(f)
}

// frame is a frame in flight.
type frame struct {
	src     net.HardwareAddr
	payload []byte
	at      time.Time // when it reached the port's queue
}

// Port is a port of a Hub. It implements rawether.Conn and
// rawether.Drainer.
type Port struct {
	hub   *Hub
	name  string
	mac   net.HardwareAddr
	queue chan frame
	cut   bool // guarded by hub.mu

	closeOnce sync.Once
	closed    chan struct{}
	dl        *deadline

	statMu   sync.Mutex
	sent     int
	overflow int
}

var _ rawether.Drainer = (*Port)(nil)

// enqueue queues f unless the port is cut, closed or full. hub.mu is held.
func (p *Port) enqueue(f frame) {
	if p.cut {
		return
	}
	select {
	case <-p.closed:
		return
	default:
	}
	f.at = time.Now()
	select {
	case p.queue <- f:
	default:
		p.statMu.Lock()
		p.overflow++
		p.statMu.Unlock()
	}
}

// Send implements rawether.Conn. A cut port loses the frame silently, as a
// NIC without carrier does.
func (p *Port) Send(dst net.HardwareAddr, payload []byte) error {
	if len(dst) != 6 {
		return fmt.Errorf("rawethertest: send on %s: bad destination %q", p.name, dst)
	}
	select {
	case <-p.closed:
		return fmt.Errorf("rawethertest: send on %s: %w", p.name, net.ErrClosed)
	default:
	}
	p.statMu.Lock()
	p.sent++
	p.statMu.Unlock()
	p.hub.send(p, dst, payload)
	return nil
}

// Recv implements rawether.Conn.
func (p *Port) Recv(buf []byte) (int, net.HardwareAddr, error) {
	select {
	case <-p.closed:
		return 0, nil, fmt.Errorf("rawethertest: recv on %s: %w", p.name, net.ErrClosed)
	case <-p.dl.wait():
		return 0, nil, fmt.Errorf("rawethertest: recv on %s: %w", p.name, errTimeout)
	default:
	}
	select {
	case f := <-p.queue:
		n := copy(buf, f.payload)
		if n < len(f.payload) {
			return n, f.src, fmt.Errorf("rawethertest: recv on %s: %w: %d bytes, buffer %d", p.name, rawether.ErrTruncated, len(f.payload), n)
		}
		return n, f.src, nil
	case <-p.closed:
		return 0, nil, fmt.Errorf("rawethertest: recv on %s: %w", p.name, net.ErrClosed)
	case <-p.dl.wait():
		return 0, nil, fmt.Errorf("rawethertest: recv on %s: %w", p.name, errTimeout)
	}
}

// RecvNow implements rawether.Drainer: the next queued frame with the
// time it reached the queue, or ErrNoFrame.
func (p *Port) RecvNow(buf []byte) (int, net.HardwareAddr, time.Time, error) {
	select {
	case <-p.closed:
		return 0, nil, time.Time{}, fmt.Errorf("rawethertest: recv on %s: %w", p.name, net.ErrClosed)
	default:
	}
	select {
	case f := <-p.queue:
		n := copy(buf, f.payload)
		if n < len(f.payload) {
			return n, f.src, f.at, fmt.Errorf("rawethertest: recv on %s: %w: %d bytes, buffer %d", p.name, rawether.ErrTruncated, len(f.payload), n)
		}
		return n, f.src, f.at, nil
	default:
		return 0, nil, time.Time{}, rawether.ErrNoFrame
	}
}

// SetReadDeadline implements rawether.Conn.
func (p *Port) SetReadDeadline(t time.Time) error {
	p.dl.set(t)
	return nil
}

// Refresh implements rawether.Conn: a port never changes its interface.
func (p *Port) Refresh() (bool, error) {
	select {
	case <-p.closed:
		return false, fmt.Errorf("rawethertest: refresh %s: %w", p.name, net.ErrClosed)
	default:
		return false, nil
	}
}

// Addr implements rawether.Conn.
func (p *Port) Addr() net.HardwareAddr { return bytes.Clone(p.mac) }

// Close implements rawether.Conn. The port stays on the hub, closed.
func (p *Port) Close() error {
	p.closeOnce.Do(func() { close(p.closed) })
	return nil
}

// Name returns the port's name.
func (p *Port) Name() string { return p.name }

// Sent returns the number of frames Send accepted (including those a cut
// link or Drop lost).
func (p *Port) Sent() int {
	p.statMu.Lock()
	defer p.statMu.Unlock()
	return p.sent
}

// Overflow returns the number of frames lost because the port's queue was
// full.
func (p *Port) Overflow() int {
	p.statMu.Lock()
	defer p.statMu.Unlock()
	return p.overflow
}
