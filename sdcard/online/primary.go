package online

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pairguard/pairguard/sdcard"
)

// Replication says when a write is acknowledged.
type Replication uint8

const (
	replicationInvalid Replication = iota
	// Sync acknowledges a write once both sides applied it, a FLUSH (and
	// so a FUA write) once both sides synced it.
	Sync
	// Async acknowledges after the local write; the peer catches up.
	Async
)

var replicationNames = [...]string{"invalid", "sync", "async"}

func (r Replication) String() string {
	if int(r) < len(replicationNames) {
		return replicationNames[r]
	}
	return fmt.Sprintf("invalid(%d)", uint8(r))
}

// ParseReplication returns the mode for a config value.
func ParseReplication(s string) (Replication, error) {
	for i, n := range replicationNames {
		if i > 0 && n == s {
			return Replication(i), nil
		}
	}
	return 0, fmt.Errorf("online: replication: unknown value %q (want sync or async)", s)
}

// Errors a caller branches on.
var (
	// ErrInconsistent: this node's data is a mix (an interrupted resync);
	// it must not become primary.
	ErrInconsistent = errors.New("online: data inconsistent, refusing to serve as primary")
	// ErrRefused: the peer's generations say it is newer, or the two
	// diverged (split brain); it is not overwritten.
	ErrRefused = errors.New("online: peer refused")
	// ErrClosed: the primary was closed.
	ErrClosed = errors.New("online: closed")
)

// Config configures a Primary.
type Config struct {
	// Device is the local datastore; the Primary does not close it.
	Device sdcard.BlockDevice
	// Store is the state directory (metadata, activity log, bitmap).
	Store sdcard.Store
	// Replication is Sync or Async.
	Replication Replication
	// FailoverTime bounds how long a peer may hold back a write or a
	// flush; a peer that does not answer within it is dropped.
	FailoverTime time.Duration
	// ActiveExtents is the size of the activity log (default 64, 256 MiB
	// of hot data resynced after a crash).
	ActiveExtents int
	// MaxQueue bounds the bytes queued to the peer (default 64 MiB): a
	// write finding it full waits for room at most FailoverTime (then the
	// peer is dropped), except an async write with PullAhead.
	MaxQueue int64
	// PullAhead (async only; DRBD's on-congestion pull-ahead): an async
	// write finding the queue full is only marked dirty, and so is every
	// write after it, and the peer falls behind, inconsistent, until the
	// resync caught up; the resync runs at a small minimum rate while the
	// application writes heavily (pace.go). The writer never waits for
	// the line, but a peer behind cannot take over. Without it the peer
	// stays consistent and only lags.
	PullAhead bool
	// Logger receives peer events; nil discards them.
	Logger *slog.Logger
}

func (c *Config) validate() error {
	if c.ActiveExtents == 0 {
		c.ActiveExtents = 64
	}
	if c.MaxQueue == 0 {
		c.MaxQueue = 64 << 20
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case c.Device == nil || c.Store == nil:
		return errors.New("online: no device or store")
	case c.Replication != Sync && c.Replication != Async:
		return fmt.Errorf("online: replication %v", c.Replication)
	case c.FailoverTime <= 0:
		return errors.New("online: failover-time must be positive")
	case c.ActiveExtents < 1 || c.ActiveExtents > alMaxExtents/2:
		return fmt.Errorf("online: %d active extents (want 1 to %d)", c.ActiveExtents, alMaxExtents/2)
	case c.Device.Size()%sdcard.Sector != 0:
		return fmt.Errorf("online: device size %d is not a multiple of %d", c.Device.Size(), sdcard.Sector)
	}
	return nil
}

// Primary is the write path of the node that serves the datastore: an
// nbd.Backend over the local device that marks, logs and forwards every
// write. See the package doc for the order of things.
type Primary struct {
	cfg  Config
	dev  sdcard.BlockDevice
	size int64
	log  *slog.Logger

	// genMu guards meta and the files it writes; taken without mu.
	genMu      sync.Mutex
	meta       *sdcard.Meta
	disk       *onDisk
	genPending bool // a new generation is due before the next acknowledgement without the peer

	mu     sync.Mutex
	cond   *sync.Cond
	closed bool
	dirty  *dirtyMap
	// The activity log: the extents named by the last committed slot.
	active   map[uint32]*extent
	evicting map[uint32]bool
	want     map[uint32]bool
	alBusy   bool
	tick     uint64
	// Ranges being written locally (or read for a resync): an
	// overlapping request waits, so both sides see overlapping writes
	// in the same order.
	ranges map[uint64][2]int64
	nextID uint64
	peer   *peerConn
	// peerHint mirrors peer for a look without mu (a write copies its
	// data for the stream before taking mu, unless it will only be
	// marked).
	peerHint atomic.Pointer[peerConn]
	synced   bool // the peer completed a resync on this connection
	// behind: the secondary is inconsistent on this connection (its
	// resync runs, or async writes were only marked: fallBehind).
	behind bool
	// ahead (pull-ahead, DRBD's Ahead state): every write is only marked,
	// from the one that found the queue full until the resync queues its
	// Done. Written under mu; read without it for a hint.
	ahead atomic.Bool
	// pace throttles the resync while ahead and the application writes
	// heavily; drains (Drain calls waiting) lift the throttle; now is
	// time.Now (tests set a clock of their own). Under mu.
	pace   pacer
	drains int
	now    func() time.Time
	// resynced counts the bytes the resync queued (tests). Under mu.
	resynced int64
	// dropHook, if set (tests), runs in drop once the waiting writers
	// are released.
	dropHook func()
	// splitBrain: the last peer was refused because the generations
	// diverged; keepLocal: the operator chose this node's data (Resolve),
	// so the next such peer is resynced in full instead.
	splitBrain, keepLocal bool
}

type extent struct {
	refs int
	last uint64
}

// OpenPrimary loads the metadata, the activity log and the bitmap, and
// marks dirty every block of the extents that were active at the last
// stop (writes there may not have reached the peer). The node's data must
// not be inconsistent.
func OpenPrimary(cfg Config) (*Primary, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	size := cfg.Device.Size()
	meta, err := sdcard.LoadMeta(cfg.Store, sdcard.Geometry{Size: size, BlockSize: sdcard.DefaultBlockSize})
	if err != nil {
		return nil, err
	}
	if meta.Gen.Current != 0 && meta.Gen.Data == sdcard.DataInconsistent {
		return nil, ErrInconsistent
	}
	blocks := uint64((size + BlockSize - 1) / BlockSize)
	disk, active, err := openOnDisk(cfg.Store, blocks)
	if err != nil {
		return nil, err
	}
	p := &Primary{
		cfg: cfg, dev: cfg.Device, size: size, log: cfg.Logger,
		meta: meta, disk: disk, genPending: true,
		dirty:  newDirtyMap(blocks),
		active: map[uint32]*extent{}, want: map[uint32]bool{},
		ranges: map[uint64][2]int64{},
		now:    time.Now,
	}
	p.cond = sync.NewCond(&p.mu)
	p.dirty.orBytes(disk.bits, 0)
	for _, e := range active {
		p.active[e] = &extent{}
		p.dirty.setRange(uint64(e)*blocksPerExtent, uint64(e+1)*blocksPerExtent)
	}
	return p, nil
}

// Size implements nbd.Backend.
func (p *Primary) Size() int64 { return p.size }

// ReadAt implements nbd.Backend: reads are local.
func (p *Primary) ReadAt(b []byte, off int64) (int, error) { return p.dev.ReadAt(b, off) }

// WriteAt implements nbd.Backend.
func (p *Primary) WriteAt(b []byte, off int64) (int, error) {
	if err := p.write(msgWrite, b, off, int64(len(b))); err != nil {
		return 0, err
	}
	return len(b), nil
}

// Zero implements nbd.Backend: the range is zeroed on both sides.
func (p *Primary) Zero(off, length int64, _ bool) error { return p.zero(off, length) }

// Trim implements nbd.Backend. A TRIM is a hint, but the two copies must
// stay the same, so it is done as WRITE_ZEROES: marked, forwarded in
// order and zeroed on both sides (cheaply where the device is a
// [ZeroRanger]).
func (p *Primary) Trim(off, length int64) error { return p.zero(off, length) }

// zeroChunk bounds one Zero record: a sync acknowledgement of a long
// range must not take longer than failover-time on the peer.
const zeroChunk = 8 << 20

func (p *Primary) zero(off, length int64) error {
	for length > 0 {
		n := min(length, zeroChunk-off%zeroChunk)
		if err := p.write(msgZero, nil, off, n); err != nil {
			return err
		}
		off += n
		length -= n
	}
	return nil
}

// Flush implements nbd.Backend: the local device is synced and, with a
// peer, a flush goes down the stream after every write before it; in sync
// mode the FLUSH is acknowledged once the peer synced too.
func (p *Primary) Flush() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	pc := p.peer
	var r *rec
	if pc != nil {
		r = pc.enqueue(header{typ: msgFlush}, nil, 0, 0)
	}
	p.mu.Unlock()
	if err := p.dev.Sync(); err != nil {
		return err
	}
	return p.settle(pc, r)
}

// settle waits, in sync mode, for the peer's acknowledgement of r (at most
// FailoverTime, then the peer is dropped), and persists a new generation
// before anything is acknowledged without the peer.
func (p *Primary) settle(pc *peerConn, r *rec) error {
	if r != nil && p.cfg.Replication == Sync {
		t := time.NewTimer(p.cfg.FailoverTime)
		select {
		case <-r.done:
		case <-t.C:
			p.drop(pc, errors.New("peer did not acknowledge within failover-time"))
		}
		t.Stop()
		if r.acked() {
			return nil
		}
	} else if r != nil {
		return nil
	}
	return p.ensureGen()
}

func (p *Primary) write(typ msgType, data []byte, off, length int64) error {
	if length == 0 {
		return nil
	}
	if off < 0 || off+length > p.size {
		return fmt.Errorf("online: %d bytes at %d beyond the device", length, off)
	}
	first, last := uint32(off/ExtentSize), uint32((off+length-1)/ExtentSize)
	if err := p.alBegin(first, last); err != nil {
		return err
	}
	defer p.alEnd(first, last)
	p.waitRoom(length)

	// The stream's copy of the data is made before taking mu (the
	// caller's buffer is reused once the write is acknowledged).
	var copied []byte
	if hint := p.peerHint.Load(); typ == msgWrite && hint != nil && !p.ahead.Load() && !p.queueFull(hint, len(data)) {
		copied = getBuf(len(data))
		copy(copied, data)
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	id := p.lockRange(off, length)
	pc := p.peer
	var r *rec
	from, to := blockRange(off, length)
	if p.pullAhead() {
		p.pace.wrote(p.now(), length)
	}
	if pc != nil && (p.ahead.Load() || p.queueFull(pc, len(data))) {
		p.fallBehind(pc)
		pc = nil // only marked, as without the peer
	}
	if pc == nil && copied != nil {
		putBuf(copied)
		copied = nil
	}
	if pc != nil {
		if typ == msgWrite && copied == nil {
			copied = getBuf(len(data)) // the queue drained or a peer attached meanwhile
			copy(copied, data)
		}
		r = pc.enqueue(header{typ: typ, off: uint64(off), length: uint32(length)}, copied, from, to)
	} else {
		p.dirty.setRange(from, to)
	}
	p.mu.Unlock()

	var err error
	if typ == msgWrite {
		_, err = p.dev.WriteAt(data, off)
	} else {
		err = writeZeroes(p.dev, off, length)
	}
	p.mu.Lock()
	delete(p.ranges, id)
	p.cond.Broadcast()
	p.mu.Unlock()
	if err != nil {
		return err
	}
	return p.settle(pc, r)
}

// pullAhead: async with on-congestion = "pull-ahead".
func (p *Primary) pullAhead() bool { return p.cfg.Replication == Async && p.cfg.PullAhead }

// queueFull reports whether an async write of n bytes finds the queue to
// pc full (it is then only marked: fallBehind).
func (p *Primary) queueFull(pc *peerConn, n int) bool {
	q := pc.queued.Load()
	return p.pullAhead() && q > 0 && q+int64(n) > p.cfg.MaxQueue
}

// ensureGen persists a new generation if one is due: the first
// acknowledgement without the peer must find it on disk, so that a peer
// that takes over meanwhile is a split brain, not overwritten.
func (p *Primary) ensureGen() error {
	p.genMu.Lock()
	defer p.genMu.Unlock()
	if !p.genPending {
		return nil
	}
	if err := p.meta.NewGeneration(); err != nil {
		return err
	}
	if err := p.meta.Save(); err != nil {
		return fmt.Errorf("online: new generation: %w", err)
	}
	p.genPending = false
	p.log.Info("new generation", "gen", p.meta.Gen.String())
	return nil
}

// lockRange waits until no other request holds a range overlapping
// [off, off+length), then holds it. Called with mu held.
func (p *Primary) lockRange(off, length int64) uint64 {
	for {
		overlap := false
		for _, r := range p.ranges {
			if r[0] < off+length && off < r[1] {
				overlap = true
				break
			}
		}
		if !overlap {
			break
		}
		p.cond.Wait()
	}
	p.nextID++
	p.ranges[p.nextID] = [2]int64{off, off + length}
	return p.nextID
}

// waitRoom makes a write wait while the peer's queue is full, at most
// FailoverTime, after which the peer is dropped.
func (p *Primary) waitRoom(n int64) {
	if p.pullAhead() {
		return // an async write finding the queue full is only marked
	}
	p.mu.Lock()
	pc := p.peer
	if pc == nil || pc.queued.Load()+n <= p.cfg.MaxQueue || pc.queued.Load() == 0 {
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	t := time.NewTimer(p.cfg.FailoverTime)
	defer t.Stop()
	for {
		select {
		case <-pc.room:
		case <-pc.dead:
			return
		case <-t.C:
			p.drop(pc, errors.New("peer queue full for failover-time"))
			return
		}
		p.mu.Lock()
		ok := p.peer != pc || pc.queued.Load()+n <= p.cfg.MaxQueue
		p.mu.Unlock()
		if ok {
			return
		}
	}
}

// alBegin makes extents first..last active (persisted in the activity
// log) and holds a reference on them. Writers needing new extents at the
// same time share one transaction.
func (p *Primary) alBegin(first, last uint32) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		if p.closed {
			return ErrClosed
		}
		p.tick++
		missing := false
		for e := first; e <= last; e++ {
			if p.active[e] == nil || p.evicting[e] {
				missing = true
				p.want[e] = true
			}
		}
		if !missing {
			for e := first; e <= last; e++ {
				a := p.active[e]
				a.refs++
				a.last = p.tick
			}
			return nil
		}
		if p.alBusy {
			p.cond.Wait()
			continue
		}
		if err := p.alCommit(); err != nil {
			return err
		}
	}
}

func (p *Primary) alEnd(first, last uint32) {
	p.mu.Lock()
	for e := first; e <= last; e++ {
		p.active[e].refs--
	}
	p.mu.Unlock()
}

// alCommit writes one activity-log transaction: the wanted extents come
// in, the least recently used idle ones go out, their dirty bits written
// to the bitmap file first. Called with mu held; releases it for the I/O.
func (p *Primary) alCommit() error {
	p.alBusy = true
	want := p.want
	p.want = map[uint32]bool{}
	var idle []uint32
	for e, a := range p.active {
		if a.refs == 0 && !want[e] {
			idle = append(idle, e)
		}
	}
	total := len(p.active)
	for e := range want {
		if p.active[e] == nil {
			total++
		}
	}
	total = p.lookahead(want, total, len(idle))
	slices.SortFunc(idle, func(a, b uint32) int { return int(p.active[a].last) - int(p.active[b].last) })
	over := min(max(total-p.cfg.ActiveExtents, 0), len(idle))
	p.evicting = map[uint32]bool{}
	pieces := map[uint32][]byte{}
	for _, e := range idle[:over] {
		p.evicting[e] = true
		b := make([]byte, blocksPerExtent/8)
		p.extentDirty(e, b)
		if slices.ContainsFunc(b, func(c byte) bool { return c != 0 }) || p.disk.extentOnDisk(e) {
			pieces[e] = b
		}
	}
	var exts []uint32
	for e := range p.active {
		if !p.evicting[e] {
			exts = append(exts, e)
		}
	}
	for e := range want {
		if p.active[e] == nil {
			exts = append(exts, e)
		}
	}
	slices.Sort(exts)
	if len(exts) > alMaxExtents {
		p.alBusy, p.evicting = false, nil
		p.cond.Broadcast()
		return fmt.Errorf("online: %d extents active at once", len(exts))
	}
	evict := len(p.evicting) > 0
	p.mu.Unlock()
	var err error
	if evict {
		// An extent leaves the log only once its writes are durable: a
		// power cut must not lose a write outside the hot extents that the
		// peer holds (DRBD flushes the lower device for the same reason).
		err = p.dev.Sync()
	}
	if err == nil {
		err = p.disk.commit(exts, pieces)
	}
	p.mu.Lock()
	if err == nil {
		for e := range p.evicting {
			delete(p.active, e)
		}
		for e := range want {
			if p.active[e] == nil {
				// Used now: an extent taken ahead of a stream is not the
				// first to leave again.
				p.active[e] = &extent{last: p.tick}
			}
		}
	}
	p.alBusy, p.evicting = false, nil
	p.cond.Broadcast()
	return err
}

// A sequential stream entering a new extent takes the next ones into the
// same transaction: without that it pays one synced log write per 4 MiB
// (and, once the log is full, one device sync to evict), each holding the
// stream back. streamTicks is how recently (in alBegin calls) the
// extent before must have been written for the write to count as a
// stream's; maxLookahead bounds the extents taken ahead, and so the
// extra data a crash makes resync (an extent in the log is resynced in
// full after a crash, written or not).
const (
	streamTicks  = 32
	maxLookahead = 8
)

// lookahead adds to want the extents after each wanted one that
// continues a stream, at most min(maxLookahead, ActiveExtents/4) each,
// and only as long as evicting idle extents keeps the log within
// ActiveExtents. It returns the new total of extents in the log. Called
// with mu held.
func (p *Primary) lookahead(want map[uint32]bool, total, idle int) int {
	k := uint32(min(maxLookahead, p.cfg.ActiveExtents/4))
	if k == 0 {
		return total
	}
	last := uint32((p.size - 1) / ExtentSize)
	for _, e := range slices.Sorted(maps.Keys(want)) {
		prev := p.active[e-1]
		if e == 0 || prev == nil || p.tick-prev.last > streamTicks {
			continue
		}
		for f := e + 1; f <= min(e+k, last); f++ {
			if p.active[f] != nil || want[f] {
				continue
			}
			if total+1 > p.cfg.ActiveExtents+idle {
				return total
			}
			want[f] = true
			total++
		}
	}
	return total
}

// extentDirty fills b with the dirty bits of extent e, counting the
// writes not yet acknowledged by the peer as dirty. Called with mu held.
func (p *Primary) extentDirty(e uint32, b []byte) {
	p.dirty.extentBytes(e, b)
	if p.peer == nil {
		return
	}
	lo, hi := uint64(e)*blocksPerExtent, uint64(e+1)*blocksPerExtent
	for _, r := range p.peer.pending {
		for i := max(r.from, lo); i < min(r.to, hi); i++ {
			b[(i-lo)/8] |= 1 << ((i - lo) % 8)
		}
	}
}

// Status is what the write path reports.
type Status struct {
	Connected bool
	// InSync: connected and the resync of this connection completed.
	InSync bool
	// Dirty is the number of 4 KiB blocks the peer may lack.
	Dirty uint64
	// Queued is the bytes sent or waiting, not yet acknowledged.
	Queued int64
	Gen    sdcard.GenInfo
	Active int
	// SplitBrain: the peer was refused, its generations diverged from
	// this node's; it lasts until a peer attaches.
	SplitBrain bool
}

// Status returns the current status.
func (p *Primary) Status() Status {
	p.genMu.Lock()
	g := p.meta.Gen
	g.History = slices.Clone(g.History)
	p.genMu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	s := Status{Connected: p.peer != nil, InSync: p.peer != nil && p.synced, Dirty: p.dirty.count, Gen: g,
		Active: len(p.active), SplitBrain: p.splitBrain}
	if p.peer != nil {
		s.Queued = p.peer.queued.Load()
	}
	return s
}

// Close drops the peer and closes the state files; the device stays open.
// Writes still running fail.
func (p *Primary) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	pc := p.peer
	p.cond.Broadcast()
	p.mu.Unlock()
	if pc != nil {
		p.drop(pc, ErrClosed)
	}
	p.genMu.Lock()
	defer p.genMu.Unlock()
	return p.disk.close()
}

// Run keeps a connection to the peer: dial, attach, wait until it drops,
// again after a pause, until ctx ends.
func (p *Primary) Run(ctx context.Context, dial func(context.Context) (net.Conn, error)) error {
	for {
		c, err := dial(ctx)
		if err == nil {
			if err = p.Attach(c); err == nil {
				p.mu.Lock()
				pc := p.peer
				p.mu.Unlock()
				if pc != nil {
					select {
					case <-pc.dead:
					case <-ctx.Done():
					}
				}
			} else {
				p.log.Warn("peer not attached", "reason", err)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// ZeroRanger is a device that zeroes a range without writing every byte
// (fallocate on an image file, BLKZEROOUT on a block device); writeZeroes
// uses it when the device has it and it works.
type ZeroRanger interface {
	ZeroRange(off, length int64) error
}

func writeZeroes(dev sdcard.BlockDevice, off, length int64) error {
	if z, ok := dev.(ZeroRanger); ok && z.ZeroRange(off, length) == nil {
		return nil
	}
	z := make([]byte, min(length, 1<<20))
	for length > 0 {
		n := min(length, int64(len(z)))
		if _, err := dev.WriteAt(z[:n], off); err != nil {
			return err
		}
		off += n
		length -= n
	}
	return nil
}

// ErrNoPeer: Drain found no peer attached.
var ErrNoPeer = errors.New("online: no peer attached")

// Drain waits until every write acknowledged so far is synced on the peer,
// in either mode: a flush goes down the stream behind them and its
// acknowledgement is awaited, bounded by ctx; a peer behind (resyncing,
// or async writes only marked) is waited for until it caught up. A
// planned handover (swap) drains first, so it loses no acknowledged write
// even in async mode.
func (p *Primary) Drain(ctx context.Context) error {
	// A peer behind catches up at full speed meanwhile, however heavily
	// the application writes.
	p.mu.Lock()
	p.drains++
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.drains--
		p.mu.Unlock()
	}()
	var pc *peerConn
	var r *rec
	for {
		p.mu.Lock()
		pc = p.peer
		if pc != nil && p.synced {
			r = pc.enqueue(header{typ: msgFlush}, nil, 0, 0)
		}
		p.mu.Unlock()
		if pc == nil || r != nil {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("online: drain: the peer is still catching up: %w", ctx.Err())
		case <-pc.dead:
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err := p.dev.Sync(); err != nil {
		return err
	}
	if r == nil {
		return ErrNoPeer
	}
	select {
	case <-r.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if !r.acked() {
		return ErrNoPeer
	}
	return nil
}

// VerifyBlock is the unit `pairguard verify` compares and reports.
const VerifyBlock = 64 << 10

// maxVerify is the most one Verify record covers.
const maxVerify = 1 << 20

// ErrNotInSync: Verify needs a peer attached and resynced.
var ErrNotInSync = errors.New("online: the peer is not attached and in sync")

// Verify compares both sides (`pairguard verify`): range by range, a
// Verify record goes down the stream, so the secondary hashes its copy
// after every write before it, while the primary hashes the same range
// with writes to it held back until the record is queued and the range
// read. It returns the numbers of the VerifyBlock-sized blocks that
// differ. Writes go on meanwhile, in either mode.
func (p *Primary) Verify(ctx context.Context) ([]uint64, error) {
	buf := make([]byte, maxVerify)
	var diff []uint64
	for off := int64(0); off < p.size; off += maxVerify {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n := min(maxVerify, p.size-off)
		p.mu.Lock()
		id := p.lockRange(off, n)
		pc := p.peer
		var r *rec
		if pc != nil && p.synced {
			r = pc.enqueue(header{typ: msgVerify, off: uint64(off), length: uint32(n)}, nil, 0, 0)
		}
		if r == nil {
			delete(p.ranges, id)
			p.cond.Broadcast()
		}
		p.mu.Unlock()
		if r == nil {
			return nil, ErrNotInSync
		}
		_, err := p.dev.ReadAt(buf[:n], off)
		p.mu.Lock()
		delete(p.ranges, id)
		p.cond.Broadcast()
		p.mu.Unlock()
		if err != nil {
			return nil, err
		}
		local := appendSums(nil, buf[:n])
		select {
		case <-r.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if !r.acked() {
			return nil, fmt.Errorf("%w: the peer was dropped during verify", ErrNotInSync)
		}
		if len(r.reply) != len(local) {
			err := fmt.Errorf("%w: %d bytes of sums for %d", ErrProtocol, len(r.reply), len(local))
			p.drop(pc, err)
			return nil, err
		}
		for i := 0; i < len(local); i += sha256.Size {
			if !bytes.Equal(local[i:i+sha256.Size], r.reply[i:i+sha256.Size]) {
				diff = append(diff, uint64(off/VerifyBlock)+uint64(i/sha256.Size))
			}
		}
	}
	return diff, nil
}

// appendSums appends the SHA-256 of each VerifyBlock of b (the last one
// possibly short).
func appendSums(out, b []byte) []byte {
	for len(b) > 0 {
		n := min(len(b), VerifyBlock)
		sum := sha256.Sum256(b[:n])
		out = append(out, sum[:]...)
		b = b[n:]
	}
	return out
}

// Resolve ends a split brain on the primary (`pairguard resolve`).
// keepLocal true keeps this node's data: the refused peer is taken at its
// next attempt (within a second) and resynced in full, its diverged
// writes overwritten. keepLocal false cannot be done on the node that
// serves the datastore: the secondary discards its own (resolve
// --discard-local there), or this node is demoted first.
func (p *Primary) Resolve(keepLocal bool) error {
	if !keepLocal {
		return errors.New("online: the primary keeps its data: run resolve --discard-local on the secondary, or resolve --keep-local here")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.splitBrain {
		return ErrNoSplitBrain
	}
	p.keepLocal = true
	p.log.Warn("split brain: the operator keeps this node's data; the peer's next attach resyncs it in full")
	return nil
}
