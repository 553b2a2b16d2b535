package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/pairguard/pairguard/drivers/nbd"
	"github.com/pairguard/pairguard/firmware/config"
	"github.com/pairguard/pairguard/firmware/engine"
	"github.com/pairguard/pairguard/firmware/logbook"
	"github.com/pairguard/pairguard/sdcard"
	nbdsrv "github.com/pairguard/pairguard/sdcard/nbd"
	"github.com/pairguard/pairguard/sdcard/online"
)

// onlineMirror is the Mirror of mode = "online" (sdcard/online): the
// primary serves the datastore through the NBD server on [datastore]
// nbd-socket (and attaches [datastore] nbd-device to it) over the write
// path, which forwards every write to the secondary; the secondary only
// applies the stream and exports nothing.
//
// SetPrimary(true) attaches the export before it returns, so the
// to-primary hook (queued after it by the engine) finds the device;
// SetPrimary(false) detaches it (NBD DISCONNECT for the kernel device)
// before the node becomes secondary. Stop leaves the kernel device
// connected: a daemon restart under a mounted filesystem is a stall, and
// the next daemon RECONFIGUREs it (online_kernel.go). Flush (before a
// swap) drains the stream: the peer holds and synced every acknowledged
// write.
type onlineMirror struct {
	device, stateDir  string
	key               []byte              // the pair key (tests), when tls is nil
	tls               *sdcard.TLSIdentity // the node's mirror identity
	repl              online.Replication
	pullAhead         bool // [datastore] on-congestion = "pull-ahead"
	failover          time.Duration
	connectionWait    time.Duration
	listen, peer      string
	nbdSocket, nbdDev string
	bootstrap         bool
	log               *slog.Logger
	book              *logbook.Book
	// openAttacher opens the kernel's NBD family (drivers/nbd.Open; a
	// fake in tests).
	openAttacher func() (nbd.Attacher, error)
	// tune prepares the process to serve a block device (I/O flusher,
	// locked memory; online_tune.go); nil in tests.
	tune func(*slog.Logger)

	mu      sync.Mutex
	dev     *sdcard.Device
	ctx     context.Context
	started bool
	primary bool
	decided bool // SetPrimary was called once: the role is known
	// the running role
	p       *online.Primary
	srv     *nbdsrv.Server
	s       *online.Secondary
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	kernel  *kernelExport
	events  chan<- engine.Event
	stopAll context.CancelFunc
	bg      sync.WaitGroup
}

func newOnlineMirror(c *config.Config, log *slog.Logger, book *logbook.Book, id *sdcard.TLSIdentity) (*onlineMirror, error) {
	d := c.Datastore
	repl, err := online.ParseReplication(d.Replication)
	if err != nil {
		return nil, err
	}
	m := &onlineMirror{
		device: d.Device, stateDir: c.StateDir, key: c.Key, tls: id, repl: repl, pullAhead: d.OnCongestion == "pull-ahead",
		failover: c.Heartbeat.FailoverTime.Duration, connectionWait: c.Heartbeat.ConnectionWait.Duration,
		nbdSocket: d.NBDSocket, nbdDev: d.NBDDevice,
		bootstrap: c.Engine.Mode == engine.ModeMain, log: log, book: book,
		openAttacher: func() (nbd.Attacher, error) { return nbd.Open() },
		tune:         tuneForBlockDevice,
	}
	if c.LAN2.Prefix.IsValid() {
		m.listen = net.JoinHostPort(c.LAN2.Prefix.Addr().String(), strconv.Itoa(d.Port))
	}
	if c.LAN2.Peer.IsValid() {
		m.peer = net.JoinHostPort(c.LAN2.Peer.String(), strconv.Itoa(d.Port))
	}
	return m, nil
}

func (m *onlineMirror) note(kind, msg string) {
	if err := m.book.Add(logbook.Entry{Kind: kind, Message: msg}); err != nil {
		m.log.Warn("logbook write failed", "err", err)
	}
	m.log.Info(msg, "kind", kind)
}

// Open opens the device and reads the generations; a fresh main's
// datastore becomes the pair's first generation.
func (m *onlineMirror) Open() (*engine.DataChanged, error) {
	dev, err := sdcard.OpenDevice(m.device, sdcard.DefaultBlockSize)
	if err != nil {
		m.note("datastore", fmt.Sprintf("datastore %s unusable: %v", m.device, err))
		return nil, err
	}
	store := sdcard.DirStore(m.stateDir)
	meta, err := sdcard.LoadMeta(store, sdcard.Geometry{Size: dev.Size(), BlockSize: sdcard.DefaultBlockSize})
	if err != nil {
		return nil, errors.Join(err, dev.Close())
	}
	if meta.Gen.Current == 0 && m.bootstrap {
		if err := meta.NewGeneration(); err == nil {
			err = meta.Save()
		}
		if err != nil {
			return nil, errors.Join(err, dev.Close())
		}
		m.note("datastore", fmt.Sprintf("first generation %v of a fresh pair from %s", meta.Gen, m.device))
	}
	m.mu.Lock()
	m.dev = dev
	m.mu.Unlock()
	ev := engine.DataChanged{State: dataState(meta.Gen.Data), Generation: meta.Gen.Current}
	if len(meta.Gen.History) > 0 {
		ev.History = meta.Gen.History[0]
	}
	return &ev, nil
}

// Start runs the node's role and reports its state every 200 ms.
func (m *onlineMirror) Start(ctx context.Context, events chan<- engine.Event) {
	if m.nbdDev != "" && m.tune != nil {
		m.tune(m.log)
	}
	ctx, stop := context.WithCancel(ctx)
	m.mu.Lock()
	m.ctx, m.events, m.started, m.stopAll = ctx, events, true, stop
	if m.dev != nil {
		m.startRoleLocked()
	}
	m.mu.Unlock()
	m.bg.Add(1)
	go func() {
		defer m.bg.Done()
		m.watch(ctx)
	}()
}

func (m *onlineMirror) watch(ctx context.Context) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	var lastD engine.DataChanged
	var lastM engine.MirrorChanged
	first := true
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		d, ms, ok := m.state()
		if !ok {
			continue
		}
		var evs []engine.Event
		if first || d != lastD {
			evs = append(evs, d)
		}
		if first || ms != lastM {
			evs = append(evs, ms)
		}
		for _, ev := range evs {
			select {
			case m.events <- ev:
			case <-ctx.Done():
				return
			}
		}
		first, lastD, lastM = false, d, ms
	}
}

// state is the node's data and mirror state for the engine.
func (m *onlineMirror) state() (engine.DataChanged, engine.MirrorChanged, bool) {
	m.mu.Lock()
	p, s := m.p, m.s
	m.mu.Unlock()
	var g sdcard.GenInfo
	ms := engine.MirrorChanged{State: engine.MirrorConnecting}
	switch {
	case p != nil:
		st := p.Status()
		g = st.Gen
		switch {
		case st.SplitBrain:
			ms.State = engine.MirrorSplitBrain
		case st.InSync:
			ms = engine.MirrorChanged{State: engine.MirrorInSync, Percent: 100}
		case st.Connected:
			ms.State = engine.MirrorSyncing
		}
	case s != nil:
		g = s.Gen()
		if s.Attached() {
			ms.State = engine.MirrorSyncing
			if g.Data == sdcard.DataUpToDate {
				ms = engine.MirrorChanged{State: engine.MirrorInSync, Percent: 100}
			}
		}
	default:
		return engine.DataChanged{}, engine.MirrorChanged{}, false
	}
	d := engine.DataChanged{State: dataState(g.Data), Generation: g.Current}
	if len(g.History) > 0 {
		d.History = g.History[0]
	}
	return d, ms, true
}

// SetPrimary switches the role; the generation rules are the write
// path's own (a new one before the first write acknowledged without the
// peer), so newGeneration needs nothing here.
func (m *onlineMirror) SetPrimary(primary, _ bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	first := !m.decided
	m.decided = true
	if first && !primary && m.nbdDev != "" {
		m.disconnectStaleLocked()
	}
	if m.primary == primary {
		return
	}
	m.primary = primary
	if !m.started || m.dev == nil {
		return
	}
	m.stopRoleLocked(true)
	m.startRoleLocked()
}

// startRoleLocked starts the primary (export attached before it returns)
// or the secondary. Called with mu held.
func (m *onlineMirror) startRoleLocked() {
	ctx, cancel := context.WithCancel(m.ctx)
	m.cancel = cancel
	store := sdcard.DirStore(m.stateDir)
	if !m.primary {
		s, err := online.OpenSecondary(m.dev, store, m.log)
		if err != nil {
			m.note("datastore", "cannot run as secondary: "+err.Error())
			return
		}
		m.s = s
		if m.listen == "" {
			return
		}
		id, err := m.identity()
		var l net.Listener
		if err == nil {
			l, err = online.ListenIdentity(m.listen, id)
		}
		if err != nil {
			m.note("datastore", "cannot listen for the primary's stream: "+err.Error())
			return
		}
		m.wg.Go(func() { _ = s.Run(ctx, l) })
		return
	}
	p, err := online.OpenPrimary(online.Config{Device: m.dev, Store: store, Replication: m.repl, PullAhead: m.pullAhead,
		FailoverTime: m.failover, Logger: m.log})
	if err != nil {
		m.note("datastore", "cannot serve the datastore as primary: "+err.Error())
		return
	}
	srv, err := nbdsrv.NewServer(p, nbdsrv.Options{MinBlock: 512, Logger: m.log})
	if err != nil {
		p.Close()
		m.note("datastore", "nbd server: "+err.Error())
		return
	}
	m.p, m.srv = p, srv
	if m.nbdSocket != "" {
		os.Remove(m.nbdSocket)
		l, err := nbdsrv.ListenUnix(m.nbdSocket)
		if err != nil {
			m.note("datastore", "cannot export on "+m.nbdSocket+": "+err.Error())
		} else {
			m.wg.Go(func() { _ = srv.Serve(l) })
		}
	}
	if m.nbdDev != "" {
		if err := m.attachKernelLocked(srv); err != nil {
			m.note("datastore", "cannot attach "+m.nbdDev+": "+err.Error())
		}
	}
	if m.peer != "" {
		if id, err := m.identity(); err == nil {
			dial := online.DialerIdentity(m.peer, id, max(m.failover, time.Second))
			m.wg.Go(func() { _ = p.Run(ctx, dial) })
		}
	}
	m.note("datastore", "datastore exported as primary ("+m.repl.String()+" replication)")
}

// identity is the node's mirror identity: the daemon's (it follows a
// teach-in while running), or one derived from the pair key.
func (m *onlineMirror) identity() (*sdcard.TLSIdentity, error) {
	if m.tls != nil {
		return m.tls, nil
	}
	id := sdcard.NewTLSIdentity()
	return id, id.SetPairKey(m.key)
}

// attachKernelLocked attaches nbd-device to the server (online_kernel.go).
func (m *onlineMirror) attachKernelLocked(srv *nbdsrv.Server) error {
	idx, err := nbd.ParseDevice(m.nbdDev)
	if err != nil {
		return err
	}
	a, err := m.openAttacher()
	if err != nil {
		return err
	}
	k, reconfigured, err := attachKernel(a, idx, srv, m.failover, m.connectionWait, m.log)
	if err != nil {
		a.Close()
		return err
	}
	m.kernel = k
	if reconfigured {
		m.note("datastore", m.nbdDev+" was still attached (the daemon restarted under it): reconfigured with new connections")
	}
	return nil
}

// disconnectStaleLocked detaches nbd-device if an earlier run of the
// daemon left it attached and this node turned out secondary.
func (m *onlineMirror) disconnectStaleLocked() {
	idx, err := nbd.ParseDevice(m.nbdDev)
	if err != nil {
		return
	}
	a, err := m.openAttacher()
	if err != nil {
		m.log.Warn("cannot check "+m.nbdDev, "err", err)
		return
	}
	defer a.Close()
	done, err := disconnectStale(a, idx)
	switch {
	case err != nil:
		m.note("datastore", "cannot detach "+m.nbdDev+" left attached by an earlier run: "+err.Error())
	case done:
		m.note("datastore", m.nbdDev+" was left attached by an earlier run; detached, this node is secondary")
	}
}

// stopRoleLocked stops the role. The primary's export: the kernel device
// is disconnected if disconnect (a demotion) and otherwise left attached
// to stall (the daemon stops), then the server drains. Called with mu
// held.
func (m *onlineMirror) stopRoleLocked(disconnect bool) {
	if m.kernel != nil {
		if err := m.kernel.detach(disconnect); err != nil {
			m.log.Warn("nbd detach", "device", m.nbdDev, "err", err)
		}
	}
	if m.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = m.srv.Shutdown(ctx)
		cancel()
		m.srv = nil
	}
	if m.kernel != nil {
		m.kernel.wait()
		m.kernel = nil
	}
	if m.p != nil {
		if err := m.p.Flush(); err != nil {
			m.log.Warn("flush at demotion", "err", err)
		}
	}
	if m.cancel != nil {
		m.cancel()
	}
	m.wg.Wait()
	if m.p != nil {
		m.p.Close()
		m.p = nil
	}
	m.s = nil
}

// Flush drains the stream before a planned handover.
func (m *onlineMirror) Flush(ctx context.Context) error {
	m.mu.Lock()
	p := m.p
	m.mu.Unlock()
	if p == nil {
		return nil
	}
	return p.Drain(ctx)
}

var errOnlineContinuous = errors.New("mode online replicates every write; there are no rounds")

func (m *onlineMirror) Sync() error { return errOnlineContinuous }

// Verify compares both sides through the stream (on the primary).
func (m *onlineMirror) Verify(ctx context.Context) (string, error) {
	m.mu.Lock()
	p := m.p
	m.mu.Unlock()
	if p == nil {
		return "", errors.New("run verify on the primary: this node only applies its stream")
	}
	blocks, err := p.Verify(ctx)
	if err != nil {
		return "", err
	}
	return verifyText(blocks), nil
}

// Resolve ends a split brain: --keep-local on the primary, or
// --discard-local on the secondary.
func (m *onlineMirror) Resolve(_ context.Context, keepLocal bool) error {
	m.mu.Lock()
	p, s := m.p, m.s
	m.mu.Unlock()
	switch {
	case p != nil:
		return p.Resolve(keepLocal)
	case s != nil:
		old, err := s.Resolve(keepLocal)
		if err == nil {
			m.note("mirror", fmt.Sprintf("split brain resolved: local generation %016x discarded (operator)", old.Current))
		}
		return err
	}
	return errors.New("the datastore is not open")
}

// Status reports the write path for `status`.
func (m *onlineMirror) Status() MirrorStatus {
	d, ms, ok := m.state()
	if !ok {
		return MirrorStatus{State: "off", Device: m.device}
	}
	st := MirrorStatus{State: ms.State.String(), Percent: float64(ms.Percent), Device: m.device,
		Generation: fmt.Sprintf("%016x", d.Generation)}
	m.mu.Lock()
	if m.p != nil {
		st.Behind = m.p.Status().Dirty
	}
	m.mu.Unlock()
	return st
}

// Stop stops everything; a kernel device stays attached (to stall until
// the next daemon reconfigures it).
func (m *onlineMirror) Stop() {
	m.mu.Lock()
	m.stopRoleLocked(false)
	dev, stop := m.dev, m.stopAll
	m.dev = nil
	m.mu.Unlock()
	if stop != nil {
		stop()
	}
	m.bg.Wait()
	if dev != nil {
		dev.Close()
	}
}
