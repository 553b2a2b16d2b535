package online

import (
	"bufio"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pairguard/pairguard/sdcard"
)

// peerConn is one connection to the secondary. Its queue is guarded by
// the Primary's mu.
type peerConn struct {
	c   net.Conn
	seq uint64
	// pending holds the records sent or to send, not yet acknowledged,
	// in order; sent is how many of them went out.
	pending []*rec
	sent    int
	queued  atomic.Int64   // changed under mu; read without it for a hint
	gen     sdcard.GenInfo // the primary's, as sent in Start
	wake    chan struct{}  // the sender has work
	behind  chan struct{}  // the resync has work again (fallBehind)
	room    chan struct{}  // an acknowledgement freed queue room
	dead    chan struct{}  // closed when dropped
	once    sync.Once
}

type rec struct {
	h        header
	data     []byte
	reply    []byte // the payload of the acknowledgement (a Verify's sums)
	from, to uint64 // dirty blocks covered by a Write or Zero
	done     chan struct{}
	ok       atomic.Bool
	refs     atomic.Int32 // the data's users: sender and receiver
}

func (r *rec) acked() bool { return r.ok.Load() }

// release is called by the sender once it wrote the data and by the
// receiver once the peer acknowledged it; the second call returns the
// buffer to the pool. (The acknowledgement implies the sender is done,
// but over the network, where the race detector cannot see it.)
func (r *rec) release() {
	if r.refs.Add(-1) == 0 {
		putBuf(r.data)
	}
}

// enqueue numbers and queues a record; data becomes the record's (the
// caller copies it first, outside the lock). Called with the Primary's
// mu held: the order of the queue is the order of the calls.
func (pc *peerConn) enqueue(h header, data []byte, from, to uint64) *rec {
	pc.seq++
	h.seq = pc.seq
	r := &rec{h: h, data: data, from: from, to: to, done: make(chan struct{})}
	r.refs.Store(2)
	pc.pending = append(pc.pending, r)
	pc.queued.Add(int64(len(data)))
	select {
	case pc.wake <- struct{}{}:
	default:
	}
	return r
}

// Attach runs the handshake on c (a connection to the secondary, TLS
// already set up) and, unless the generations forbid it, makes it the
// peer: new writes are forwarded from now on and the dirty blocks (the
// bitmap, the hot extents, or everything) are resynced. It returns once
// the stream runs; the peer's end is signalled by Status.
func (p *Primary) Attach(c net.Conn) error {
	if err := p.attach(c); err != nil {
		c.Close()
		return err
	}
	return nil
}

func (p *Primary) attach(c net.Conn) error {
	_ = c.SetDeadline(time.Now().Add(max(p.cfg.FailoverTime, 5*time.Second)))
	buf := make([]byte, headerLen)
	h, err := readHeader(c, buf)
	if err != nil {
		return fmt.Errorf("online: hello: %w", err)
	}
	if h.typ != msgHello {
		return fmt.Errorf("%w: expected hello, got type %d", ErrProtocol, h.typ)
	}
	b, err := readPayload(c, h)
	if err != nil {
		return fmt.Errorf("online: hello: %w", err)
	}
	remote, err := decodeGen(b)
	if err != nil {
		return err
	}
	if err := p.ensureGen(); err != nil {
		return err
	}
	p.genMu.Lock()
	local := p.meta.Gen
	local.History = slices.Clone(local.History)
	bitmapOK := remote.Current == local.Current || (p.meta.BitmapValid && remote.Current == p.meta.SyncedGen)
	p.genMu.Unlock()
	switch d := sdcard.Decide(local, remote); d {
	case sdcard.DirSplitBrain:
		p.mu.Lock()
		keep := p.keepLocal
		p.splitBrain = !keep
		p.mu.Unlock()
		if !keep {
			return fmt.Errorf("%w: local %v, peer %v: %v", ErrRefused, local, remote, d)
		}
		// resolve --keep-local: the peer's diverged data goes.
		bitmapOK = false
		p.log.Warn("split brain resolved: the peer's diverged generation is overwritten", "peer-gen", remote.String())
	case sdcard.DirFromRemote:
		return fmt.Errorf("%w: local %v, peer %v: %v", ErrRefused, local, remote, d)
	}
	if err := writeFrame(c, header{typ: msgStart, flags: flagResync}, appendGen(nil, local)); err != nil {
		return fmt.Errorf("online: start: %w", err)
	}
	_ = c.SetDeadline(time.Time{})

	pc := &peerConn{c: c, gen: local, wake: make(chan struct{}, 1), room: make(chan struct{}, 1), dead: make(chan struct{}),
		behind: make(chan struct{}, 1)}
	p.mu.Lock()
	if p.closed || p.peer != nil {
		p.mu.Unlock()
		return fmt.Errorf("%w: already attached or closed", ErrRefused)
	}
	if !bitmapOK {
		p.dirty.setRange(0, p.dirty.n)
	}
	// Writes the secondary acknowledged but had not synced when it
	// crashed can only be in the hot extents.
	for e := range p.active {
		p.dirty.setRange(uint64(e)*blocksPerExtent, uint64(e+1)*blocksPerExtent)
	}
	p.peer, p.synced, p.behind = pc, false, true
	p.peerHint.Store(pc)
	p.splitBrain, p.keepLocal = false, false
	dirty := p.dirty.count
	p.mu.Unlock()
	p.log.Info("peer attached", "peer", c.RemoteAddr().String(), "gen", local.String(), "peer-gen", remote.String(), "resync-blocks", dirty, "full", !bitmapOK)
	go p.sender(pc)
	go p.receiver(pc)
	go p.resync(pc)
	return nil
}

// drop ends the connection pc: every record not acknowledged becomes
// dirty, waiting writers are released, and a new generation is due
// before the next acknowledgement.
func (p *Primary) drop(pc *peerConn, reason error) {
	p.mu.Lock()
	current := p.peer == pc
	p.mu.Unlock()
	if !current {
		return
	}
	// The generation is due before any waiting writer is released: one
	// that finds its record not acknowledged is acknowledged without the
	// peer, and must persist a new generation first.
	p.genMu.Lock()
	p.genPending = true
	p.genMu.Unlock()
	p.mu.Lock()
	if p.peer != pc {
		p.mu.Unlock()
		return
	}
	p.peer, p.synced = nil, false
	p.peerHint.Store(nil)
	p.ahead.Store(false)
	for _, r := range pc.pending {
		if r.to > r.from {
			p.dirty.setRange(r.from, r.to)
		}
		close(r.done)
	}
	pc.pending = nil
	p.cond.Broadcast()
	p.mu.Unlock()
	if p.dropHook != nil {
		p.dropHook()
	}
	pc.once.Do(func() { close(pc.dead) })
	pc.c.Close()
	p.log.Warn("peer dropped", "reason", reason)
}

func (p *Primary) sender(pc *peerConn) {
	w := bufio.NewWriterSize(pc.c, 256<<10)
	var batch []*rec
	hdr := make([]byte, 0, headerLen)
	for {
		p.mu.Lock()
		if p.peer != pc {
			p.mu.Unlock()
			return
		}
		batch = append(batch[:0], pc.pending[pc.sent:]...)
		pc.sent = len(pc.pending)
		p.mu.Unlock()
		if len(batch) == 0 {
			select {
			case <-pc.wake:
			case <-pc.dead:
				return
			}
			continue
		}
		var err error
		for _, r := range batch {
			h := r.h
			if h.typ == msgWrite {
				h.length = uint32(len(r.data))
			}
			if _, err = w.Write(h.append(hdr[:0])); err != nil {
				break
			}
			if h.typ == msgWrite {
				if _, err = w.Write(r.data); err != nil {
					break
				}
				r.release() // copied into the buffer or written
			}
		}
		if err == nil {
			err = w.Flush()
		}
		if err != nil {
			p.drop(pc, fmt.Errorf("send: %w", err))
			return
		}
	}
}

func (p *Primary) receiver(pc *peerConn) {
	br := bufio.NewReader(pc.c)
	buf := make([]byte, headerLen)
	for {
		h, err := readHeader(br, buf)
		if err == nil && h.typ != msgAck {
			err = fmt.Errorf("%w: type %d from the secondary", ErrProtocol, h.typ)
		}
		var reply []byte
		if err == nil && h.length > 0 {
			reply, err = readPayload(br, h)
		}
		if err != nil {
			p.drop(pc, fmt.Errorf("receive: %w", err))
			return
		}
		p.mu.Lock()
		if p.peer != pc {
			p.mu.Unlock()
			return
		}
		if pc.sent == 0 || len(pc.pending) == 0 || pc.pending[0].h.seq != h.seq {
			p.mu.Unlock()
			p.drop(pc, fmt.Errorf("%w: acknowledgement %d out of order", ErrProtocol, h.seq))
			return
		}
		r := pc.pending[0]
		if (r.h.typ == msgVerify) != (reply != nil) {
			p.mu.Unlock()
			p.drop(pc, fmt.Errorf("%w: acknowledgement %d with %d bytes", ErrProtocol, h.seq, len(reply)))
			return
		}
		r.reply = reply
		pc.pending[0] = nil
		pc.pending = pc.pending[1:]
		pc.sent--
		pc.queued.Add(-int64(len(r.data)))
		r.release() // the peer applied it
		r.ok.Store(true)
		close(r.done)
		p.mu.Unlock()
		select {
		case pc.room <- struct{}{}:
		default:
		}
	}
}

// resyncChunk is the most a resync record carries.
const resyncChunk = 1 << 20

// fallBehind: an async write finds the queue to the peer full, so it is
// only marked dirty (DRBD's pull-ahead): the writer does not wait for
// the line, and neither does any write after it (ahead), until the
// resync caught up and queued its Done. The first such write sends a
// Resync unless a resync already runs (the secondary is inconsistent
// from then on, as it misses the marked writes) and wakes the resync,
// which sends the dirty blocks, at the minimum rate while the
// application writes heavily (pace.go), and ends with a Done. Called
// with mu held.
func (p *Primary) fallBehind(pc *peerConn) {
	if p.ahead.Load() {
		return
	}
	p.ahead.Store(true)
	if !p.behind {
		p.behind, p.synced = true, false
		pc.enqueue(header{typ: msgResync}, nil, 0, 0)
	}
	select {
	case pc.behind <- struct{}{}:
	default:
	}
	p.log.Info("peer behind: async writes are only marked until the resync caught up")
}

// resyncPace says whether the resync is throttled (ahead, the application
// writing heavily, no Drain waiting) and how long it waits before its
// next record. Called with mu held.
func (p *Primary) resyncPace() (wait time.Duration, throttled bool) {
	if !p.ahead.Load() || p.drains > 0 {
		return 0, false
	}
	now := p.now()
	if !p.pace.heavy(now) {
		return 0, false
	}
	if w := p.pace.next.Sub(now); w > 0 {
		p.pace.parks++
		return min(w, paceWindow), true
	}
	return 0, true
}

// resync sends every dirty block, then Done; once the secondary took the
// generation, the bitmap file is cleared and the peer is in sync. It
// runs again each time the peer falls behind, until the peer goes.
func (p *Primary) resync(pc *peerConn) {
	for p.resyncOnce(pc) {
		select {
		case <-pc.behind:
		case <-pc.dead:
			return
		}
	}
}

// resyncOnce runs one resync; false when the peer went.
func (p *Primary) resyncOnce(pc *peerConn) bool {
	var next uint64
scan:
	for {
		p.mu.Lock()
		if p.peer != pc {
			p.mu.Unlock()
			return false
		}
		i := p.dirty.next(next)
		if i >= p.dirty.n {
			if p.dirty.count > 0 {
				// Marked behind the scan meanwhile: another pass.
				p.mu.Unlock()
				next = 0
				continue
			}
			p.mu.Unlock()
			break
		}
		wait, throttled := p.resyncPace()
		if wait > 0 {
			p.mu.Unlock()
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-pc.dead:
				t.Stop()
				return false
			}
			next = i
			continue
		}
		chunk := uint64(resyncChunk / BlockSize)
		if throttled {
			chunk = throttledChunk / BlockSize
		}
		j := i + 1
		for j < p.dirty.n && j-i < chunk && p.dirty.get(j) {
			j++
		}
		off := int64(i) * BlockSize
		length := min(int64(j)*BlockSize, p.size) - off
		id := p.lockRange(off, length)
		for k := i; k < j; k++ {
			p.dirty.clear(k)
		}
		p.mu.Unlock()
		buf := getBuf(int(length))
		_, err := p.dev.ReadAt(buf, off)
		p.mu.Lock()
		if err == nil && p.peer == pc {
			pc.enqueue(header{typ: msgWrite, off: uint64(off)}, buf, i, j)
			p.resynced += length
			if throttled {
				p.pace.sent(p.now(), length)
			}
		} else {
			p.dirty.setRange(i, j)
		}
		delete(p.ranges, id)
		p.cond.Broadcast()
		full := p.peer == pc && pc.queued.Load() > min(p.cfg.MaxQueue, 8<<20)
		p.mu.Unlock()
		if err != nil {
			p.drop(pc, fmt.Errorf("resync read: %w", err))
			return false
		}
		for full {
			select {
			case <-pc.room:
			case <-pc.dead:
				return false
			}
			p.mu.Lock()
			full = p.peer == pc && pc.queued.Load() > min(p.cfg.MaxQueue, 8<<20)
			p.mu.Unlock()
		}
		next = j
	}
	p.mu.Lock()
	if p.peer != pc {
		p.mu.Unlock()
		return false
	}
	if p.dirty.count > 0 { // marked between the scan and here
		p.mu.Unlock()
		next = 0
		goto scan
	}
	// Nothing dirty: the Done makes the secondary consistent; writes
	// after it are streamed behind it again (in the stream's order, so
	// the secondary applies them after the Done), and one finding the
	// queue full sends a new Resync.
	p.behind = false
	p.ahead.Store(false)
	select {
	case <-pc.behind: // a kick of this round
	default:
	}
	r := pc.enqueue(header{typ: msgDone}, nil, 0, 0)
	p.mu.Unlock()
	<-r.done
	if !r.acked() {
		return false
	}
	// The secondary holds the generation: the bitmap is relative to it
	// from now on.
	p.genMu.Lock()
	p.meta.SyncedGen, p.meta.BitmapValid = pc.gen.Current, true
	err := p.meta.Save()
	p.genMu.Unlock()
	if err == nil {
		err = p.clearBitmapFile(pc)
	}
	if err != nil {
		p.drop(pc, fmt.Errorf("after resync: %w", err))
		return false
	}
	p.mu.Lock()
	if p.peer == pc && !p.behind {
		p.synced = true
	}
	p.mu.Unlock()
	p.log.Info("peer in sync", "gen", pc.gen.String())
	return true
}

// clearBitmapFile zeroes the persisted bitmap once nothing is dirty, as
// one activity-log transaction would (no commit runs meanwhile).
func (p *Primary) clearBitmapFile(pc *peerConn) error {
	p.mu.Lock()
	for p.alBusy {
		p.cond.Wait()
	}
	if p.peer != pc || p.dirty.count != 0 {
		p.mu.Unlock()
		return nil
	}
	p.alBusy = true
	p.mu.Unlock()
	err := p.disk.clearBitmap()
	p.mu.Lock()
	p.alBusy = false
	p.cond.Broadcast()
	p.mu.Unlock()
	return err
}

// Buffers of the records' data, by size class (4 KiB to 1 MiB): a 1 MiB
// write is copied once for the stream, into memory that needs no fresh
// pages.
var recPools [9]sync.Pool

// recHolders keeps the *[]byte that carry buffers through recPools, so
// that putting a buffer back allocates nothing.
var recHolders sync.Pool

func poolClass(n int) int {
	for i := range recPools {
		if n <= 4096<<i {
			return i
		}
	}
	return -1
}

func getBuf(n int) []byte {
	i := poolClass(n)
	if i < 0 {
		return make([]byte, n)
	}
	if p, ok := recPools[i].Get().(*[]byte); ok {
		b := (*p)[:n]
		*p = nil
		recHolders.Put(p)
		return b
	}
	return make([]byte, n, 4096<<i)
}

func putBuf(b []byte) {
	if i := poolClass(cap(b)); i >= 0 && cap(b) == 4096<<i {
		p, _ := recHolders.Get().(*[]byte)
		if p == nil {
			p = new([]byte)
		}
		*p = b[:cap(b)]
		recPools[i].Put(p)
	}
}
