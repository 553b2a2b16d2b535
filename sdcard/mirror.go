package sdcard

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"
)

// Errors a caller may branch on.
var (
	ErrNotConnected = errors.New("sdcard: peer not connected")
	ErrNotPrimary   = errors.New("sdcard: not primary")
	ErrBusy         = errors.New("sdcard: peer busy")
	ErrSplitBrain   = errors.New("sdcard: split brain")
	ErrIncompatible = errors.New("sdcard: incompatible peer")
)

// Mode is how writes reach the mirror.
type Mode uint8

const (
	modeInvalid Mode = iota
	// ModePeriodic scans and resyncs every Interval (writes bypass the mirror).
	ModePeriodic
	// ModeOnline routes writes through Mirror.WriteAt, so the dirty bitmap
	// is exact and rounds after a reconnect are bitmap-based. (The NBD
	// front end and per-write forwarding come later.)
	ModeOnline
)

var modeNames = [...]string{"invalid", "periodic", "online"}

func (m Mode) String() string {
	if int(m) < len(modeNames) {
		return modeNames[m]
	}
	return fmt.Sprintf("invalid(%d)", uint8(m))
}

// ParseMode returns the mode for the config value of [datastore] mode.
func ParseMode(s string) (Mode, error) {
	for i, n := range modeNames {
		if i > 0 && n == s {
			return Mode(i), nil
		}
	}
	return 0, fmt.Errorf("sdcard: mode: unknown value %q", s)
}

// MirrorConfig configures a Mirror. Keys in comments are the config
// file's ([datastore] unless said otherwise).
type MirrorConfig struct {
	Device     string      // device
	Dev        BlockDevice // if set, used instead of opening Device (tests)
	BlockSize  int         // block-size, default 64 KiB
	StateDir   string      // state-dir
	Store      Store       // if set, used instead of StateDir (crash tests)
	PairKey    []byte      // pair-key
	ListenAddr string      // [lan2] address with the mirror port, e.g. "192.168.77.1:7789"
	PeerAddr   string      // [lan2] peer-address with the mirror port
	Mode       Mode        // mode, default periodic
	Interval   time.Duration
	// BandwidthLimit caps the bytes per second this node writes (0: none).
	BandwidthLimit int64
	// FreezeMount, when set, is frozen (FIFREEZE) for each round the node sends.
	FreezeMount  string
	Hash         HashKind         // default xxh3-128
	JournalLimit int64            // default 256 MiB
	SplitBrain   SplitBrainPolicy // split-brain, default discard-zero-changes
	// Backoff bounds for reconnecting; defaults 200ms and 5s.
	MinBackoff, MaxBackoff time.Duration
	// ReplyTimeout bounds the wait for each frame of a round; default 2m.
	ReplyTimeout time.Duration
	// TLS, when set, is the node's mirror identity instead of the one
	// derived from PairKey; it may change while the mirror runs (a
	// teach-in), and the dialer waits while it has none.
	TLS *TLSIdentity
	// Compression of the data records this node sends (compression,
	// default off); used only with a peer that negotiates it.
	Compression Compression
	// ZstdLevel overrides DefaultZstdLevel (benchmarks).
	ZstdLevel int
	// NoRcvLowat turns off the wake-up mark of bulk reads (benchmarks).
	NoRcvLowat bool
	// NoReadBuffer makes bulk reads read the socket once per TLS record
	// instead of lowatBytes at a time (benchmarks).
	NoReadBuffer bool
	// NoDirect writes an initial sync through the page cache instead of
	// with O_DIRECT (benchmarks).
	NoDirect bool
	// NoGather sends every TLS record with a system call of its own
	// instead of a write's records together (benchmarks).
	NoGather bool
}

func (c *MirrorConfig) validate() error {
	if c.BlockSize == 0 {
		c.BlockSize = DefaultBlockSize
	}
	if err := CheckBlockSize(c.BlockSize); err != nil {
		return fmt.Errorf("sdcard: block-size: %w", err)
	}
	if c.Mode == modeInvalid {
		c.Mode = ModePeriodic
	}
	if c.Hash == hashInvalid {
		c.Hash = HashXXH3
	}
	if c.JournalLimit == 0 {
		c.JournalLimit = DefaultJournalLimit
	}
	if c.SplitBrain == splitBrainInvalid {
		c.SplitBrain = SplitBrainDiscardZeroChanges
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = 200 * time.Millisecond
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = 5 * time.Second
	}
	if c.ReplyTimeout == 0 {
		c.ReplyTimeout = 2 * time.Minute
	}
	if c.Compression == compressionInvalid {
		c.Compression = CompressionOff
	}
	if c.ZstdLevel == 0 {
		c.ZstdLevel = int(DefaultZstdLevel)
	}
	switch {
	case c.Device == "" && c.Dev == nil:
		return errors.New("sdcard: device: empty")
	case c.StateDir == "" && c.Store == nil:
		return errors.New("sdcard: state-dir: empty")
	case c.Mode == ModePeriodic && c.Interval <= 0:
		return errors.New("sdcard: interval: must be positive in periodic mode")
	case c.ListenAddr == "" || c.PeerAddr == "" || c.ListenAddr == c.PeerAddr:
		return errors.New("sdcard: lan2 address and peer-address: two different host:port values needed")
	case c.BandwidthLimit < 0:
		return errors.New("sdcard: bandwidth limit: negative")
	case c.Compression != CompressionOff && c.Compression != CompressionZstd:
		return fmt.Errorf("sdcard: compression: invalid value %d", c.Compression)
	case c.ZstdLevel < int(zstd.SpeedFastest) || c.ZstdLevel > int(zstd.SpeedBestCompression):
		return fmt.Errorf("sdcard: zstd level %d outside %d..%d", c.ZstdLevel, zstd.SpeedFastest, zstd.SpeedBestCompression)
	}
	if c.FreezeMount != "" {
		if rel, err := filepath.Rel(c.FreezeMount, c.StateDir); err == nil && !strings.HasPrefix(rel, "..") {
			return fmt.Errorf("sdcard: freeze: %s holds the state-dir %s, which must stay writable during a round", c.FreezeMount, c.StateDir)
		}
	}
	if _, _, err := net.SplitHostPort(c.ListenAddr); err != nil {
		return fmt.Errorf("sdcard: lan2 address: %w", err)
	}
	if _, _, err := net.SplitHostPort(c.PeerAddr); err != nil {
		return fmt.Errorf("sdcard: lan2 peer-address: %w", err)
	}
	return nil
}

// EventKind says what an Event reports.
type EventKind uint8

const (
	eventInvalid EventKind = iota
	EventConnected
	EventDisconnected
	EventPeerRejected // TLS failed: another pair, a wrong key, or not a mirror
	EventIncompatible // protocol, block size or hash differ
	EventRoundDone
	EventRoundFailed
	EventSplitBrain
	EventSplitBrainResolved // Text says which generation was discarded
	EventInconsistent       // a round outgrew the journal: data inconsistent until it completes
	EventOutdated           // the peer holds newer data
	EventDeviceFailed       // an I/O error: the datastore is unusable until CheckDevice succeeds
	EventDeviceBack         // the device works again
)

var eventNames = [...]string{"invalid", "connected", "disconnected", "peer-rejected", "incompatible",
	"round-done", "round-failed", "split-brain", "split-brain-resolved", "inconsistent", "outdated",
	"device-failed", "device-back"}

func (k EventKind) String() string {
	if int(k) < len(eventNames) {
		return eventNames[k]
	}
	return fmt.Sprintf("invalid(%d)", uint8(k))
}

// RoundStats describes one round, for the logbook.
type RoundStats struct {
	Round     uint64
	Mode      RoundMode
	Sender    bool          // this node sent
	Scanned   uint64        // blocks whose coarse sums were compared
	Blocks    uint64        // blocks that differed (sender) or were written (receiver)
	Records   uint64        // data and zero records sent
	DataBytes uint64        // payload bytes of data records
	WireBytes uint64        // frame bytes both ways
	Duration  time.Duration // wall time
	InPlace   bool          // the receiver outgrew its journal
}

// String says what the round did, for the logbook: "round 7 sent
// (checksum): 12 of 16384 blocks differed, 786432 data bytes, ...".
func (r RoundStats) String() string {
	dir := "received"
	if r.Sender {
		dir = "sent"
	}
	var what string
	switch {
	case r.Scanned > 0:
		what = fmt.Sprintf("%d of %d blocks differed", r.Blocks, r.Scanned)
	case r.Sender:
		what = fmt.Sprintf("%d blocks sent without a sum scan", r.Blocks)
	default:
		what = fmt.Sprintf("%d blocks written", r.Blocks)
	}
	s := fmt.Sprintf("round %d %s (%v): %s, %d data bytes, %d bytes on the wire, %v",
		r.Round, dir, r.Mode, what, r.DataBytes, r.WireBytes, r.Duration.Round(time.Millisecond))
	if r.InPlace {
		s += ", written in place (larger than the journal)"
	}
	return s
}

// Event is one thing for the logbook.
type Event struct {
	Kind          EventKind
	Round         RoundStats
	Local, Remote GenInfo
	Err           error
	Text          string
}

// Status is the mirror's state for `pairguard status`.
type Status struct {
	State      MirrorState
	Data       DataState
	Generation uint64
	History    []uint64
	Epoch      uint64
	NodeID     uint64
	Primary    bool
	Direction  Direction     // from the last Hello exchange; invalid when disconnected
	Percent    float64       // of the running round
	Rate       float64       // wire bytes per second of the running round
	ETA        time.Duration // of the running round, 0 when unknown
	Behind     uint64        // dirty blocks (online) or blocks the last round found differing
	LastRound  RoundStats
	// DeviceErr is the device's last I/O error while it has not worked
	// again since (the fault datastore-missing); nil when it works.
	DeviceErr error
}

// changeStamper is a device that tells whether it was written since an
// earlier stamp (see [Device.ChangeStamp]).
type changeStamper interface {
	ChangeStamp() ([]byte, error)
}

// Mirror replicates the datastore to the peer. Create it with NewMirror,
// drive it with Run; the other methods are safe from any goroutine.
type Mirror struct {
	cfg     MirrorConfig
	log     *slog.Logger
	dev     BlockDevice
	watch   *watchedDevice
	store   Store
	geom    Geometry
	tlsConf *tls.Config
	journal *Journal
	fine    *fineCache // nil when it cannot be opened; used by the session goroutine
	events  chan Event
	cmds    chan command
	kick    chan struct{}

	// stamp is the device's ChangeStamp; nil when it has none (then no
	// sum cache is kept).
	stamp func() ([]byte, error)
	// pacer is the device's write-back pacing, nil when it has none.
	pacer writebackPacer
	// cacheHits counts the checksum rounds this node answered from its
	// sum cache.
	cacheHits atomic.Uint64
	// directBytes counts the bytes received rounds wrote with O_DIRECT.
	directBytes atomic.Uint64

	// refused counts connections closed unanswered because MaxHandshakes
	// were under way.
	refused atomic.Uint64

	// commitMu is held while a received round is checked and committed,
	// and by NewGeneration (LostPeer's too) and SetPrimary: a round never lands
	// after this node took over or started a generation of its own.
	commitMu sync.Mutex

	mu        sync.Mutex
	meta      *Meta
	primary   bool
	running   bool
	connected bool
	inRound   bool
	synced    bool
	dir       Direction
	peer      helloMsg
	behind    uint64
	last      RoundStats
	round     uint64
	prog      progress
	dropped   uint64
	// sbChecked is the local generation a split-brain check found changed
	// (not scanned again until the generation or the role changes).
	sbChecked uint64
	// peerKnown: a Hello from the peer arrived since the start, so peer
	// holds its generation as of the last exchange.
	peerKnown bool
}

type progress struct {
	total, done uint64
	start       time.Time
	wire        func() uint64
}

type cmdKind uint8

const (
	cmdSync cmdKind = iota + 1
	cmdFlush
	cmdVerify
	cmdDiscardPeer
)

type command struct {
	kind  cmdKind
	reply chan cmdResult
}

type cmdResult struct {
	stats  RoundStats
	blocks []uint64
	err    error
}

// NewMirror opens the device and the state, and finishes or discards a
// round a crash interrupted. A missing, read-only or too small device is
// returned as ErrNoDevice, ErrReadOnly or ErrTooSmall: the daemon raises
// an alarm and goes to role fault.
func NewMirror(cfg MirrorConfig, log *slog.Logger) (*Mirror, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	var tc *tls.Config
	if cfg.TLS != nil {
		tc = cfg.TLS.Config()
	} else {
		var err error
		if tc, err = TLSConfig(cfg.PairKey); err != nil {
			return nil, err
		}
	}
	tc = tc.Clone()
	tc.NextProtos = []string{alpnSums, alpnCompressed} // offered always: any node reads compressed records and block sums
	dev := cfg.Dev
	if dev == nil {
		d, err := OpenDevice(cfg.Device, cfg.BlockSize)
		if err != nil {
			return nil, err
		}
		d.SetWriteback(WritebackEvery)
		dev = d
	} else if dev.Size() < int64(cfg.BlockSize) {
		return nil, fmt.Errorf("%w: %d bytes", ErrTooSmall, dev.Size())
	}
	m := &Mirror{
		cfg: cfg, log: log, dev: dev, tlsConf: tc, store: cfg.Store,
		geom:   Geometry{Size: dev.Size(), BlockSize: cfg.BlockSize},
		events: make(chan Event, 128),
		cmds:   make(chan command),
		kick:   make(chan struct{}, 1),
	}
	if m.store == nil {
		m.store = DirStore(cfg.StateDir)
	}
	if sp, ok := dev.(changeStamper); ok {
		m.stamp = sp.ChangeStamp
	}
	if wp, ok := dev.(writebackPacer); ok && cfg.Dev == nil {
		m.pacer = wp
	}
	m.watch = &watchedDevice{BlockDevice: dev, onFail: func(err error) {
		log.Error("mirror device failed", "device", cfg.Device, "reason", err)
		m.emit(Event{Kind: EventDeviceFailed, Err: err})
	}}
	m.dev = m.watch
	// A device that opens but cannot be read is no datastore.
	if err := m.CheckDevice(); err != nil {
		return nil, errors.Join(fmt.Errorf("%w: %w", ErrNoDevice, err), m.Close())
	}
	if err := m.open(); err != nil {
		return nil, errors.Join(err, m.Close())
	}
	return m, nil
}

func (m *Mirror) open() error {
	meta, err := LoadMeta(m.store, m.geom)
	if err != nil {
		return err
	}
	m.meta = meta
	if m.journal, err = OpenJournal(m.store); err != nil {
		return err
	}
	if m.fine, err = openFineCache(m.store, m.cfg.Hash, m.geom.BlockSize); err != nil {
		m.log.Warn("mirror works without its fine-sum cache", "reason", err)
		m.fine = nil
	}
	// A committed journal is replayed before anything else; it stays
	// until its apply, the device sync and the metadata save succeeded, so
	// a failure here is retried at the next open.
	if err := m.finishPending(); err != nil {
		return fmt.Errorf("sdcard: journal recovery: %w", err)
	}
	if err := meta.Save(); err != nil {
		return err
	}
	return m.journal.Reset()
}

// Close releases the device and the journal. Call it after Run returned.
func (m *Mirror) Close() error {
	var errs []error
	if m.journal != nil {
		errs = append(errs, m.journal.Close())
	}
	if m.fine != nil {
		errs = append(errs, m.fine.close())
	}
	if m.cfg.Dev == nil && m.dev != nil {
		errs = append(errs, m.dev.Close())
	}
	return errors.Join(errs...)
}

// Events delivers logbook events. The channel is buffered; when the
// reader falls behind, events are dropped and counted.
func (m *Mirror) Events() <-chan Event { return m.events }

func (m *Mirror) emit(e Event) {
	select {
	case m.events <- e:
	default:
		m.mu.Lock()
		m.dropped++
		m.mu.Unlock()
	}
}

// Status returns the current state.
func (m *Mirror) Status() Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := Status{
		Data:       m.meta.Gen.Data,
		Generation: m.meta.Gen.Current,
		History:    append([]uint64(nil), m.meta.Gen.History...),
		Epoch:      m.meta.Epoch,
		NodeID:     m.meta.NodeID,
		Primary:    m.primary,
		LastRound:  m.last,
		Behind:     m.behind,
		DeviceErr:  m.watch.err(),
	}
	if m.cfg.Mode == ModeOnline {
		s.Behind = m.meta.Dirty.Count()
	}
	switch {
	case !m.running:
		s.State = MirrorOff
	case !m.connected:
		s.State = MirrorConnecting
	case m.dir == DirSplitBrain:
		s.State = MirrorSplitBrain
	case m.inRound:
		s.State = MirrorSyncing
	case m.synced && m.dir == DirNone && s.Behind == 0:
		s.State = MirrorInSync
	default:
		s.State = MirrorBehind
	}
	if m.connected {
		s.Direction = m.dir
	}
	if m.inRound && m.prog.total > 0 {
		p := m.prog
		s.Percent = 100 * float64(p.done) / float64(p.total)
		el := time.Since(p.start)
		if el > 0 && p.wire != nil {
			s.Rate = float64(p.wire()) / el.Seconds()
		}
		if p.done > 0 {
			s.ETA = time.Duration(float64(el) * float64(p.total-p.done) / float64(p.done))
		}
	}
	return s
}

// SetPrimary tells the mirror whether this node is primary (the source).
// A secondary never sends its data; a primary never accepts a round.
func (m *Mirror) SetPrimary(primary bool) {
	m.commitMu.Lock() // a round being committed finishes first
	defer m.commitMu.Unlock()
	m.mu.Lock()
	if m.primary != primary {
		m.sbChecked = 0
	}
	m.primary = primary
	m.mu.Unlock()
	m.poke()
}

// NewGeneration starts a new data generation and records epoch; the
// daemon calls it when this node becomes primary (takeover, forced
// takeover, planned handover, first start of a fresh pair), after
// persisting the epoch and before claiming the service address. The
// metadata is fsynced before it returns.
func (m *Mirror) NewGeneration(epoch uint64) (GenInfo, error) {
	m.commitMu.Lock() // a round being committed finishes first
	defer m.commitMu.Unlock()
	m.mu.Lock()
	old := m.meta.Gen
	if err := m.meta.NewGeneration(); err != nil {
		m.mu.Unlock()
		return GenInfo{}, err
	}
	m.meta.Epoch = epoch
	m.meta.BitmapValid = false
	m.synced = false // the peer holds an older generation until a round proves otherwise
	err := m.meta.Save()
	if err != nil {
		m.meta.Gen = old
	}
	g := m.meta.Gen
	m.mu.Unlock()
	m.poke()
	return g, err
}

// LostPeer is called when this node, as primary, lost its peer. If the
// peer may hold the current generation (it did at the last exchange, or
// no exchange happened yet), a new generation starts and is saved before
// LostPeer returns: a peer that takes over meanwhile starts its own, and
// the reconnection finds a split brain instead of overwriting either
// side's writes. A peer already known to be behind needs none (its
// generation is in this node's history, which a split brain also shows),
// so a flapping link does not push generations out of the history.
// It reports whether a generation started. A secondary does nothing.
func (m *Mirror) LostPeer(epoch uint64) (GenInfo, bool, error) {
	m.mu.Lock()
	if !m.primary || (m.peerKnown && m.peer.Gen.Current != m.meta.Gen.Current) {
		g := m.meta.Gen
		m.mu.Unlock()
		return g, false, nil
	}
	m.mu.Unlock()
	g, err := m.NewGeneration(epoch)
	return g, err == nil, err
}

// Gen returns the local generation information.
func (m *Mirror) Gen() GenInfo {
	m.mu.Lock()
	defer m.mu.Unlock()
	g := m.meta.Gen
	g.History = append([]uint64(nil), g.History...)
	return g
}

func (m *Mirror) poke() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// WriteAt is the write path of online mode: the write goes to the device
// and its blocks are marked dirty, the bitmap persisted before the data
// when a block turns dirty (a crash never loses a dirty mark). Only the
// primary writes. Forwarding each write to the peer comes with the NBD
// front end; until then the next round carries the dirty blocks.
func (m *Mirror) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	if !m.primary {
		m.mu.Unlock()
		return 0, ErrNotPrimary
	}
	first := uint64(off / int64(m.geom.BlockSize))
	last := uint64((off + int64(len(p)) - 1) / int64(m.geom.BlockSize))
	fresh := false
	for b := first; b <= last && len(p) > 0; b++ {
		if !m.meta.Dirty.Get(b) {
			m.meta.Dirty.Set(b)
			fresh = true
		}
	}
	if fresh {
		if err := m.meta.Save(); err != nil {
			m.mu.Unlock()
			return 0, err
		}
	}
	m.mu.Unlock()
	return m.dev.WriteAt(p, off)
}

// SyncNow runs a round now and returns its figures (`pairguard sync`).
// It always compares both sides' sums, whatever the dirty bitmap says.
// On a secondary it asks the primary for a round and returns at once.
func (m *Mirror) SyncNow(ctx context.Context) (RoundStats, error) {
	r, err := m.do(ctx, cmdSync)
	return r.stats, err
}

// Flush sends the last data before a planned handover (before RELEASE):
// a round that returns once the peer has made it durable.
func (m *Mirror) Flush(ctx context.Context) error {
	m.mu.Lock()
	p := m.primary
	m.mu.Unlock()
	if !p {
		return ErrNotPrimary
	}
	_, err := m.do(ctx, cmdFlush)
	return err
}

// Verify compares both sides block by block (`pairguard verify`) and
// returns the blocks whose sums differ. In periodic mode a primary's
// writes since the last round show up as differences.
func (m *Mirror) Verify(ctx context.Context) ([]uint64, error) {
	r, err := m.do(ctx, cmdVerify)
	return r.blocks, err
}

// Resolve ends a split brain by naming the side to keep. keepLocal false
// discards this node's generation (it becomes outdated and receives the
// peer's data); keepLocal true tells the peer to discard its own. The
// discarded generation is reported in an EventSplitBrainResolved.
func (m *Mirror) Resolve(ctx context.Context, keepLocal bool) error {
	if keepLocal {
		_, err := m.do(ctx, cmdDiscardPeer)
		return err
	}
	return m.discardLocal("operator")
}

func (m *Mirror) discardLocal(reason string) error {
	m.mu.Lock()
	if m.primary {
		m.mu.Unlock()
		return fmt.Errorf("sdcard: a primary keeps its data: %w", ErrSplitBrain)
	}
	old := m.meta.Gen
	g := GenInfo{Data: DataOutdated}
	if old.Current != 0 {
		g.History = append([]uint64{old.Current}, old.History...)
	}
	m.meta.Gen = g
	m.meta.BitmapValid = false
	m.synced = false
	err := m.meta.Save()
	if err != nil {
		m.meta.Gen = old
	}
	m.mu.Unlock()
	if err != nil {
		return err
	}
	m.log.Warn("mirror split brain resolved: local generation discarded", "reason", reason,
		"generation", fmt.Sprintf("%016x", old.Current))
	m.emit(Event{Kind: EventSplitBrainResolved, Local: old,
		Text: fmt.Sprintf("local generation %016x discarded (%s)", old.Current, reason)})
	m.poke()
	return nil
}

func (m *Mirror) do(ctx context.Context, k cmdKind) (cmdResult, error) {
	m.mu.Lock()
	running := m.running
	m.mu.Unlock()
	if !running {
		return cmdResult{}, ErrNotConnected
	}
	c := command{kind: k, reply: make(chan cmdResult, 1)}
	select {
	case m.cmds <- c:
	case <-ctx.Done():
		return cmdResult{}, ctx.Err()
	}
	select {
	case r := <-c.reply:
		return r, r.err
	case <-ctx.Done():
		return cmdResult{}, ctx.Err()
	}
}

// Run connects to the peer and serves the mirror until ctx ends,
// reconnecting with backoff. Of the two nodes the one whose ListenAddr
// sorts lower dials; the other listens. Run returns nil when ctx ends.
func (m *Mirror) Run(ctx context.Context) error {
	m.mu.Lock()
	m.running = true
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		m.running, m.connected = false, false
		m.mu.Unlock()
	}()
	var wg sync.WaitGroup
	defer wg.Wait() // runs after cancel
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	conns := make(chan net.Conn)
	done := make(chan struct{}, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if m.cfg.ListenAddr < m.cfg.PeerAddr {
			m.dialLoop(ctx, conns, done)
		} else {
			m.listenLoop(ctx, conns)
		}
	}()
	var next net.Conn
	for {
		c := next
		next = nil
		if c == nil {
			select {
			case <-ctx.Done():
				return nil
			case c = <-conns:
			case cmd := <-m.cmds:
				m.answerOffline(cmd)
				continue
			}
		}
		start := time.Now()
		nc, err := m.session(ctx, c, conns)
		c.Close()
		m.mu.Lock()
		m.connected, m.inRound, m.synced = false, false, false
		m.mu.Unlock()
		if ctx.Err() != nil {
			return nil
		}
		m.log.Info("mirror disconnected", "reason", err, "lasted", time.Since(start).Round(time.Millisecond))
		m.emit(Event{Kind: EventDisconnected, Err: err})
		next = nc
		select {
		case done <- struct{}{}:
		default:
		}
	}
}

func (m *Mirror) answerOffline(c command) {
	c.reply <- cmdResult{err: ErrNotConnected}
}

func (m *Mirror) keepAlive() net.KeepAliveConfig {
	return net.KeepAliveConfig{Enable: true, Idle: 5 * time.Second, Interval: 2 * time.Second, Count: 3}
}

func (m *Mirror) dialLoop(ctx context.Context, conns chan<- net.Conn, done <-chan struct{}) {
	backoff := m.cfg.MinBackoff
	host, _, _ := net.SplitHostPort(m.cfg.ListenAddr)
	d := net.Dialer{Timeout: 5 * time.Second, KeepAliveConfig: m.keepAlive()}
	if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
		d.LocalAddr = &net.TCPAddr{IP: ip}
	}
	for ctx.Err() == nil {
		if id := m.cfg.TLS; id != nil && !id.Ready() { // not paired yet
			select {
			case <-time.After(m.cfg.MinBackoff):
			case <-ctx.Done():
				return
			}
			continue
		}
		c, err := d.DialContext(ctx, "tcp", m.cfg.PeerAddr)
		if err == nil {
			c = newLowatConn(c)
			tc := tls.Client(c, m.tlsConf)
			hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err = tc.HandshakeContext(hctx)
			cancel()
			if err != nil {
				c.Close()
				m.rejected(c.RemoteAddr(), err)
			} else {
				select {
				case conns <- tc:
				case <-ctx.Done():
					tc.Close()
					return
				}
				start := time.Now()
				select {
				case <-done:
				case <-ctx.Done():
					return
				}
				if time.Since(start) > 10*time.Second {
					backoff = m.cfg.MinBackoff
				}
			}
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return
		}
		backoff = min(backoff*2, m.cfg.MaxBackoff)
	}
}

// rejected reports a failed handshake with the peer's address (Event.Text),
// by which the logbook aggregates a flood per source.
func (m *Mirror) rejected(from net.Addr, err error) {
	if errors.Is(err, ErrWrongPeer) || isTLSAlert(err) {
		m.log.Warn("mirror peer rejected", "from", from, "reason", err)
		m.emit(Event{Kind: EventPeerRejected, Err: err, Text: hostOf(from)})
	} else {
		m.log.Debug("mirror handshake failed", "from", from, "reason", err)
	}
}

// hostOf is the address of a peer without its port.
func hostOf(a net.Addr) string {
	if a == nil {
		return ""
	}
	if h, _, err := net.SplitHostPort(a.String()); err == nil {
		return h
	}
	return a.String()
}

// isTLSAlert tells a TLS failure (an alert, or bytes that are not TLS
// records) from a network error. crypto/tls returns both as values.
func isTLSAlert(err error) bool {
	var a tls.AlertError
	var r tls.RecordHeaderError
	return errors.As(err, &a) || errors.As(err, &r)
}

// Refused returns how many connections the listener closed unanswered
// because MaxHandshakes were under way.
func (m *Mirror) Refused() uint64 { return m.refused.Load() }

// MaxHandshakes bounds the TLS handshakes the mirror's listener runs at
// once; a connection beyond it is closed at once, so a flood of
// connections costs neither memory nor CPU nor logbook entries.
const MaxHandshakes = 4

func (m *Mirror) listenLoop(ctx context.Context, conns chan<- net.Conn) {
	backoff := m.cfg.MinBackoff
	lc := net.ListenConfig{KeepAliveConfig: m.keepAlive()}
	for ctx.Err() == nil {
		l, err := lc.Listen(ctx, "tcp", m.cfg.ListenAddr)
		if err != nil {
			m.log.Warn("mirror cannot listen; retrying", "addr", m.cfg.ListenAddr, "reason", err)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return
			}
			backoff = min(backoff*2, m.cfg.MaxBackoff)
			continue
		}
		stop := context.AfterFunc(ctx, func() { l.Close() })
		handshakes := make(chan struct{}, MaxHandshakes)
		for {
			c, err := l.Accept()
			if err != nil {
				break
			}
			select {
			case handshakes <- struct{}{}:
			default:
				m.refused.Add(1)
				c.Close()
				continue
			}
			go func() {
				defer func() { <-handshakes }()
				tc := tls.Server(newLowatConn(c), m.tlsConf)
				hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				defer cancel()
				if err := tc.HandshakeContext(hctx); err != nil {
					c.Close()
					m.rejected(c.RemoteAddr(), err)
					return
				}
				select {
				case conns <- tc:
				case <-ctx.Done():
					tc.Close()
				}
			}()
		}
		stop()
		l.Close()
	}
}
