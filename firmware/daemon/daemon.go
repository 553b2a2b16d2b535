// Package daemon wires the role engine to Linux: the failover-line sockets,
// the service address, ARP, hooks, the logbook and the control socket. Its
// loop is the only place where time, sockets and goroutines meet the engine.
//
// The loop takes frames from the receivers and every other event (checks,
// the witness, probes, hooks, links, the mirror, the epoch writer) from
// one ordered inbox that never blocks a sender, so no event overtakes an
// earlier one. Every goroutine Run starts is counted in one WaitGroup and
// has ended when Run returns. Hooks run on one worker, one at a time, in
// the engine's order. The faults the daemon raises clear by themselves
// (faults.go).
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pairguard/pairguard/drivers/addr"
	"github.com/pairguard/pairguard/drivers/arp"
	"github.com/pairguard/pairguard/drivers/rawether"
	"github.com/pairguard/pairguard/firmware/arbiter"
	"github.com/pairguard/pairguard/firmware/config"
	"github.com/pairguard/pairguard/firmware/engine"
	"github.com/pairguard/pairguard/firmware/frame"
	"github.com/pairguard/pairguard/firmware/hooks"
	"github.com/pairguard/pairguard/firmware/logbook"
	"github.com/pairguard/pairguard/firmware/pairing"
	"github.com/pairguard/pairguard/sdcard"
)

// Version is the software version sent in every frame; set by the linker.
var Version = "0.1.0"

// Deps are the daemon's connections to the outside. Open fills them with
// the real drivers; tests pass fakes.
type Deps struct {
	LAN2  rawether.Conn // the failover line (required)
	LAN1  rawether.Conn // the second heartbeat path (nil: none)
	Addr  addr.Manager  // the service address (nil: none configured)
	ARP   arp.Client    // probes, announcements, witness (nil: none)
	NDP   arp.Announcer // unsolicited neighbour advertisements for service-address6 (nil: none)
	Links []LinkWatch
	Panel *Panel // front panel and watchdog (nil: none)
	// Closers are closed when the daemon stops, after the address is released.
	Closers []func() error
}

// LinkWatch watches the carrier of LAN 1 or LAN 2. Watch is called by Run
// with a context that ends when Run returns; its channel is closed then.
type LinkWatch struct {
	Path  engine.Path
	Watch func(ctx context.Context) (<-chan rawether.LinkEvent, error)
}

// Daemon is one running pairguard node.
type Daemon struct {
	cfg    *config.Config
	log    *slog.Logger
	deps   Deps
	eng    *engine.Engine
	state  stateDir
	book   *logbook.Book
	garp   *arp.GARP
	garp6  *arp.GARP
	key    atomic.Pointer[frame.Key] // nil while a taught-in node is unpaired
	replay *frame.Replay
	frames frame.Counters
	start  time.Time
	nodeID uint64
	bootID uint64
	seq    uint64
	buf    []byte
	vmac   net.HardwareAddr // the MAC announced for the service address

	rx     chan received     // frames from the receivers (goRecv)
	in     *inbox            // every other event, in order
	events chan engine.Event // the mirror's events, forwarded to in
	ctl    chan func()
	reload chan *config.Config
	ctx    context.Context // ends when Run returns; for the loop's goroutines

	hookq  *hookQueue
	hookBG hooks.Background
	// role and prev are the role and the one before, as the processed
	// RoleChanged actions tell them (PAIRGUARD_PREV_ROLE).
	role, prev engine.Role
	failing    map[string]bool // health checks failing now, by name
	faults     faultRetry
	// writeEpoch persists the epoch, writeReserved the reserved epoch
	// (the state dir; tests inject failures).
	writeEpoch    func(uint64) error
	writeReserved func(uint64) error
	follow        followers
	drain         *drainer       // drain mode (drain.go); nil: receive goroutines
	deferred      []engine.Event // faults found while applying actions

	holds        bool // the service address is on the interface
	releaseErr   error
	lastTakeover takeoverInfo
	captures     []*capture
	capturing    atomic.Bool // a capture is running: receivers keep the raw bytes
	mirror       Mirror
	panelDev     *Panel
	panel        *frontPanel
	wire         wireState
	arb          *arbiter.Conn       // the lease client (nil: no arbiter)
	pair         *pairState          // the teach-in (nil with a provisioned pair-key)
	pairUntil    atomic.Int64        // until when (mono ns) receivers pass pairing frames
	mirrorID     *sdcard.TLSIdentity // the mirror's TLS identity and pin (pairing.go)
	settings     settingsSync        // the comparison of the pair-level settings (settings.go)
	rtWarn       sync.Once           // the warning that rt-priority cannot be had

	wg sync.WaitGroup // every goroutine Run starts
}

type takeoverInfo struct {
	At     time.Time `json:"at"`
	Reason string    `json:"reason"`
	Epoch  uint64    `json:"epoch"`
}

// New prepares a daemon from a validated config and its connections.
func New(cfg *config.Config, deps Deps, log *slog.Logger) (*Daemon, error) {
	if deps.LAN2 == nil && cfg.Engine.Mode != engine.ModeIndependent {
		return nil, errors.New("daemon: no failover-line connection")
	}
	own := cfg // before the pair record's key and settings
	cfg, rec, err := withPairRecord(cfg)
	damaged := err
	if err != nil && !errors.Is(err, pairing.ErrRecord) {
		return nil, err
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("daemon: state-dir: %w", err)
	}
	d := &Daemon{
		cfg:      cfg,
		log:      log,
		deps:     deps,
		state:    stateDir(cfg.StateDir),
		replay:   frame.NewReplay(),
		start:    time.Now(),
		rx:       make(chan received, 64),
		in:       newInbox(),
		events:   make(chan engine.Event, 64),
		hookq:    newHookQueue(),
		failing:  map[string]bool{},
		ctl:      make(chan func()),
		reload:   make(chan *config.Config, 1),
		buf:      make([]byte, 0, frame.MaxLen),
		mirror:   noMirror{},
		panelDev: deps.Panel,
	}
	d.writeEpoch, d.writeReserved = d.state.raiseEpoch, d.state.raiseReserved
	d.faults.init()
	if d.nodeID, err = d.state.nodeID(); err != nil {
		return nil, err
	}
	if len(cfg.Key) > 0 {
		d.key.Store(frame.NewKey(cfg.Key))
	}
	if err := d.setupPairing(cfg, own, rec); err != nil {
		return nil, err
	}
	if damaged != nil && d.pair != nil {
		log.Error("the pair record is damaged: running unpaired; teach the pair in again", "err", damaged)
		d.pair.damaged = damaged.Error()
	}
	if d.bootID, err = d.state.nextBoot(); err != nil {
		return nil, err
	}
	if err := d.state.loadReplay(d.replay); err != nil {
		log.Warn("replay marks unreadable, starting with none", "err", err)
	}
	epoch, _, err := d.state.readUint("epoch")
	if err != nil {
		return nil, err
	}
	// The reserved epoch may have been claimed before a crash: a floor
	// for this run's claims, not the current epoch.
	reserved, _, err := d.state.readUint(reservedFile)
	if err != nil {
		return nil, err
	}
	if d.book, err = logbook.Open(cfg.StateDir, cfg.Logbook.Entries); err != nil {
		return nil, err
	}
	d.book.Watch(d.publishEntry)
	ecfg := cfg.Engine
	ecfg.NodeID = d.nodeID
	ecfg.Software = Version
	ecfg.BootID = d.bootID
	ecfg.ReservedEpoch = reserved
	ecfg.Unpaired = d.pair != nil && rec == nil
	d.cfg.Engine.Unpaired = ecfg.Unpaired
	if ecfg.Nonce, err = newNonce(); err != nil {
		return nil, err
	}
	if d.eng, err = engine.New(ecfg, epoch, 0); err != nil {
		return nil, err
	}
	d.role, d.prev = d.eng.Role(), d.eng.Role()
	if err := d.setupMirrorIdentity(rec); err != nil {
		return nil, err
	}
	if cfg.Datastore != nil && cfg.Datastore.Mode == "online" {
		om, err := newOnlineMirror(cfg, log, d.book, d.mirrorID)
		if err != nil {
			return nil, fmt.Errorf("daemon: datastore: %w", err)
		}
		d.mirror = om
	} else if cfg.Datastore != nil {
		ds, err := newDatastore(cfg, log, d.book, func() uint64 { return d.eng.Status().Epoch }, d.mirrorID)
		if err != nil {
			return nil, fmt.Errorf("daemon: datastore: %w", err)
		}
		d.mirror = ds
	}
	if deps.ARP != nil {
		d.vmac = deps.ARP.HardwareAddr()
		g, err := arp.NewGARP(deps.ARP, arp.GARPConfig{Repeat: cfg.GARP.Repeat, Interval: cfg.GARP.Interval.Duration, Refresh: cfg.GARP.Refresh.Duration}, log)
		if err != nil {
			return nil, err
		}
		d.garp = g
	}
	if deps.NDP != nil {
		g, err := arp.NewGARP(deps.NDP, arp.GARPConfig{Repeat: cfg.GARP.Repeat, Interval: cfg.GARP.Interval.Duration, Refresh: cfg.GARP.Refresh.Duration}, log)
		if err != nil {
			return nil, err
		}
		d.garp6 = g
	}
	if err := d.openArbiter(); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *Daemon) mono() time.Duration { return time.Since(d.start) }

// Run runs the daemon until ctx ends, then shuts down: a primary hands over
// to its peer (or releases the address) before Run returns. Every goroutine
// Run starts has ended when it returns.
func (d *Daemon) Run(ctx context.Context) error {
	d.cleanStaleAddress()
	loopCtx, stopAll := context.WithCancel(context.Background())
	d.ctx = loopCtx
	defer func() {
		stopAll()
		d.hookq.close() // queued hooks (to-secondary at a stop) still run
		d.wg.Wait()
		d.hookBG.Close()
		d.follow.closeAll()
		d.book.Close()
	}()
	d.wg.Go(d.runHooks)
	d.goFlushLogbook(loopCtx)
	if useDrain(d.cfg.Engine.Interval, d.deps.LAN2, d.deps.LAN1) {
		d.startDrain(loopCtx) // drain.go
	} else {
		if d.deps.LAN2 != nil {
			d.goRecv(loopCtx, d.deps.LAN2, engine.PathLAN2)
		}
		if d.deps.LAN1 != nil {
			d.goRecv(loopCtx, d.deps.LAN1, engine.PathLAN1)
		}
	}
	for _, w := range d.deps.Links {
		d.goLink(loopCtx, w)
	}
	if d.cfg.LAN1.WitAddr.IsValid() && d.deps.ARP != nil {
		d.goWitness(loopCtx)
	}
	for _, c := range d.cfg.Checks {
		d.goCheck(loopCtx, c)
	}
	if data, err := d.mirror.Open(); err != nil {
		d.apply(d.eng.Step(d.mono(), engine.FaultChanged{Reason: "datastore-missing", Active: true}))
	} else if data != nil {
		d.apply(d.eng.Step(d.mono(), *data))
	}
	d.wg.Go(func() {
		for {
			select {
			case ev := <-d.events:
				d.queue(ev)
			case <-loopCtx.Done():
				return
			}
		}
	})
	d.mirror.Start(loopCtx, d.events)
	d.goTuneProcs(loopCtx)
	d.goArbiter(loopCtx)
	d.startPanel(loopCtx)
	d.logbook("start", fmt.Sprintf("pairguard %s, node %s (%016x), boot %d", Version, d.cfg.NodeName, d.nodeID, d.bootID))
	d.apply(d.eng.Start(d.mono()))

	second := time.NewTicker(time.Second)
	defer second.Stop()
	wake := newWakeTimer(loopCtx, d)
	defer wake.close()
	wake.arm(d)
	var shutdown <-chan time.Time
	stopping := false
	done := ctx.Done()
	for {
		select {
		case <-done:
			d.drainFrames()
			done = nil
			stopping = true
			d.log.Info("stopping", "role", d.eng.Role())
			d.apply(d.eng.Step(d.mono(), engine.CommandIssued{Cmd: engine.CmdShutdown}))
			shutdown = time.After(d.cfg.Hooks.Timeout.Duration + 2*time.Second)
		case <-shutdown:
			d.log.Warn("handover did not finish in time; releasing the address")
			return d.finish()
		case <-wake.c: // the engine's next due time or the regular tick
			wake.fired(d)
			// Drain mode (drain.go): the frames that came in meanwhile
			// go first, here and before every other event, so that the
			// engine never judges the peer without them.
			d.drainFrames()
			d.apply(d.eng.Tick(d.mono()))
			d.pairTick()
		case <-second.C:
			d.drainFrames()
			d.everySecond()
		case r := <-d.rx:
			d.receive(r)
		case <-d.in.ready:
			d.drainFrames()
			for _, ev := range d.in.take() {
				d.step(ev)
			}
		case f := <-d.ctl:
			d.drainFrames()
			f()
		case next := <-d.reload:
			d.drainFrames()
			d.applyReload(next)
		case ev := <-d.buttonEvents():
			d.drainFrames()
			d.pressed(ev)
		}
		d.publishPanel()
		wake.arm(d)
		if stopping && d.eng.Role() != engine.RolePrimary {
			return d.finish()
		}
		if d.pair != nil && d.pair.restart && d.eng.Role() != engine.RolePrimary {
			d.log.Info("restarting to adopt the pair's settings")
			return errors.Join(d.finish(), ErrRestart)
		}
	}
}

// step feeds one event of the inbox to the engine. Health checks report
// one by one; the engine hears the verdict over all of them.
func (d *Daemon) step(ev engine.Event) {
	if c, ok := ev.(engine.CheckChanged); ok {
		d.checkChanged(c)
		return
	}
	if f, ok := ev.(engine.FaultChanged); ok {
		d.faults.changed(f, time.Now())
	}
	d.apply(d.eng.Step(d.mono(), ev))
}

// everySecond retries faults and sends the pair-level settings.
func (d *Daemon) everySecond() {
	for _, ev := range d.faults.due(time.Now(), d.retryFault) {
		d.step(ev)
	}
	d.settingsTick()
}

// goFlushLogbook syncs the logbook every second, off the loop: an fsync
// on a busy card must not delay a heartbeat.
func (d *Daemon) goFlushLogbook(ctx context.Context) {
	d.wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if err := d.book.Flush(); err != nil {
				d.log.Warn("logbook sync failed", "err", err)
			}
		}
	})
}

// goLink forwards one interface's carrier changes to the inbox.
func (d *Daemon) goLink(ctx context.Context, w LinkWatch) {
	ch, err := w.Watch(ctx)
	if err != nil {
		d.log.Warn("cannot watch the link", "path", w.Path, "err", err)
		return
	}
	d.wg.Go(func() {
		for ev := range ch { // closed once ctx ends
			d.queue(engine.LinkChanged{Path: w.Path, Up: ev.Up})
		}
	})
}

// finish releases what the node holds and closes the connections.
func (d *Daemon) finish() error {
	if d.holds {
		d.releaseAddress()
	}
	d.mirror.Stop()
	d.closePanel()
	var errs []error
	for _, c := range d.deps.Closers {
		errs = append(errs, c())
	}
	d.logbook("stop", "pairguard stopped")
	return errors.Join(errs...)
}

// tickFor returns the loop's regular tick (the wake timer goes off for it
// too, wake.go): four heartbeat intervals, between
// 20 ms and 100 ms. Heartbeats, the peer's failover-time and the end of an
// arbiter lease do not wait for it (the wake timer, wake.go); it covers
// the engine's other waits (connection-wait-time, elections, alarms), and
// each tick costs a wake-up (at 2 ms, the 1 ms tick of old was most of the
// daemon's CPU time at rest).
//
// Four intervals, at least 20 ms: at 2 ms the 5 ms tick of old was 200 of
// the daemon's 1,500 wake-ups a second.
func tickFor(interval time.Duration) time.Duration {
	return min(max(4*interval, 20*time.Millisecond), 100*time.Millisecond)
}

// cleanStaleAddress removes the service address left on the interface by a
// previous run: a node that is not primary must not answer for it.
func (d *Daemon) cleanStaleAddress() {
	if d.deps.Addr == nil || !d.cfg.LAN1.Prefix.IsValid() {
		return
	}
	for _, p := range d.prefixes() {
		has, err := d.deps.Addr.Has(p)
		if err != nil {
			d.log.Warn("cannot check the service address", "addr", p, "err", err)
			continue
		}
		if has {
			d.log.Warn("removing a stale service address left by an earlier run", "addr", p)
			if err := d.deps.Addr.Remove(p); err != nil {
				d.log.Error("cannot remove the stale service address", "addr", p, "err", err)
			}
		}
	}
}

func (d *Daemon) prefixes() []netip.Prefix {
	var ps []netip.Prefix
	if d.cfg.LAN1.Prefix.IsValid() {
		ps = append(ps, d.cfg.LAN1.Prefix)
	}
	if d.cfg.LAN1.Prefix6.IsValid() {
		ps = append(ps, d.cfg.LAN1.Prefix6)
	}
	return ps
}

// apply carries out the engine's actions in order (see the engine's package
// doc). A fault found while doing so (the epoch cannot be persisted, the
// address cannot be added) is fed to the engine right after the batch.
func (d *Daemon) apply(acts []engine.Action) {
	for i := 0; i < len(acts); i++ {
		switch a := acts[i].(type) {
		case engine.ReserveEpoch:
			d.wg.Go(func() {
				t0 := time.Now()
				err := d.writeReserved(a.Epoch)
				if err != nil {
					// The engine then persists a claim's epoch before the
					// address, as without a reservation.
					d.log.Warn("cannot reserve the next epoch", "epoch", a.Epoch, "err", err)
				} else {
					d.log.Debug("epoch reserved", "epoch", a.Epoch, "took", time.Since(t0))
				}
				d.queue(engine.EpochReserved{Epoch: a.Epoch, Err: err})
			})
		case engine.RecordEpoch:
			// The claim is covered by the reserved record: the epoch
			// file follows, off the critical path.
			d.wg.Go(func() {
				t0 := time.Now()
				if err := d.writeEpoch(a.Epoch); err != nil {
					d.log.Error("cannot persist the epoch", "epoch", a.Epoch, "err", err)
					d.queue(engine.FaultChanged{Reason: faultStateDir, Active: true})
					return
				}
				d.log.Debug("epoch persisted after the claim", "epoch", a.Epoch, "took", time.Since(t0))
			})
		case engine.PersistEpoch:
			t0 := time.Now()
			err := d.writeEpoch(a.Epoch)
			d.log.Debug("epoch persisted", "epoch", a.Epoch, "took", time.Since(t0))
			if err != nil {
				// Nothing may act on an epoch that is not on disk: a
				// promotion is abandoned whole (no address, no frame
				// announcing it, no mirror source, no hook).
				if j := promotionEnd(acts, i); j > i {
					d.log.Error("cannot persist the epoch; the takeover is abandoned", "epoch", a.Epoch, "err", err)
					d.logbook("takeover-aborted", fmt.Sprintf("epoch %d could not be persisted: %v", a.Epoch, err))
					i = j
				} else {
					d.log.Error("cannot persist the epoch", "epoch", a.Epoch, "err", err)
				}
				d.deferred = append(d.deferred, engine.FaultChanged{Reason: faultStateDir, Active: true})
			}
		case engine.ClaimAddress:
			t0 := time.Now()
			d.claimAddress()
			d.log.Debug("address claim done", "took", time.Since(t0))
		case engine.ReleaseAddress:
			d.releaseAddress()
		case engine.Send:
			d.send(a)
		case engine.StartProbe:
			d.startProbe()
		case engine.RunHook:
			d.runHook(a, acts[i+1:])
		case engine.SetMirrorRole:
			d.mirror.SetPrimary(a.Primary, a.NewGeneration)
		case engine.FlushMirror:
			d.wg.Go(func() {
				ctx, cancel := context.WithTimeout(d.ctx, d.cfg.Hooks.Timeout.Duration)
				defer cancel()
				d.queue(engine.FlushDone{Err: d.mirror.Flush(ctx)})
			})
		case engine.Log:
			d.logEntry(logbook.Entry{Kind: a.Kind, Role: a.Role.String(), Epoch: a.Epoch, Message: a.Message})
		case engine.AlarmRaised:
			d.log.Warn("alarm", "alarm", string(a.Alarm), "reason", a.Reason)
			d.publishAlarms(string(a.Alarm), true, a.Reason)
		case engine.AlarmCleared:
			d.log.Info("alarm cleared", "alarm", string(a.Alarm))
			d.publishAlarms(string(a.Alarm), false, "")
		case engine.WantLease:
			d.wantLease(a.Want)
		case engine.RoleChanged:
			st := d.eng.Status()
			d.role, d.prev = a.Role, a.Prev
			d.log.Info("role changed", "role", a.Role, "prev", a.Prev, "epoch", st.Epoch, "peer", st.Peer.State, "reason", a.Reason)
			if a.Role == engine.RolePrimary {
				d.lastTakeover = takeoverInfo{At: time.Now(), Reason: a.Reason, Epoch: st.Epoch}
			}
			d.publishRole(a, st.Epoch)
		default:
			panic(fmt.Sprintf("daemon: unknown action %T", acts[i]))
		}
	}
	d.leaseInfo()
	for len(d.deferred) > 0 {
		ev := d.deferred[0]
		d.deferred = d.deferred[1:]
		d.step(ev)
	}
}

// promotionEnd returns the index of the RoleChanged to primary that ends
// the promotion begun before acts[i], or i when acts[i:] holds none.
func promotionEnd(acts []engine.Action, i int) int {
	for j := i + 1; j < len(acts); j++ {
		if rc, ok := acts[j].(engine.RoleChanged); ok {
			if rc.Role == engine.RolePrimary {
				return j
			}
			return i
		}
	}
	return i
}

// queue feeds an event back to the loop without blocking it, behind every
// event queued before it.
func (d *Daemon) queue(ev engine.Event) { d.in.post(ev) }

func (d *Daemon) claimAddress() {
	d.holds = true
	if d.deps.Addr == nil {
		return
	}
	for _, p := range d.prefixes() {
		if err := d.deps.Addr.Add(p); err != nil {
			d.log.Error("cannot add the service address", "addr", p, "err", err)
			d.logbook("fault", fmt.Sprintf("cannot add the service address %s: %v", p, err))
			d.deferred = append(d.deferred, engine.FaultChanged{Reason: faultAddressClaim, Active: true})
			return
		}
	}
	d.faults.claimed()
	// The first announcements leave from the loop, at once: from the
	// schedulers' goroutines they waited 0.3-0.8 ms for a thread (lan1
	// bench, a takeover at short intervals), the client's outage with it.
	if d.garp != nil && d.cfg.LAN1.Prefix.IsValid() {
		d.garp.StartNow(d.cfg.LAN1.Prefix.Addr(), d.vmac)
	}
	if d.garp6 != nil && d.cfg.LAN1.Prefix6.IsValid() {
		d.garp6.StartNow(d.cfg.LAN1.Prefix6.Addr(), d.vmac)
	}
	d.log.Info("service address claimed", "addr", d.cfg.LAN1.Prefix, "epoch", d.eng.Status().Epoch)
}

func (d *Daemon) releaseAddress() {
	if !d.holds {
		// Nothing was claimed (an abandoned takeover): nothing to remove.
		return
	}
	d.holds = false
	if d.garp != nil {
		d.garp.Stop()
	}
	if d.garp6 != nil {
		d.garp6.Stop()
	}
	if d.deps.Addr == nil {
		return
	}
	var errs []error
	for _, p := range d.prefixes() {
		errs = append(errs, d.deps.Addr.Remove(p))
	}
	d.releaseErr = errors.Join(errs...)
	if d.releaseErr != nil {
		d.log.Error("cannot release the service address", "err", d.releaseErr)
		return
	}
	d.log.Info("service address released", "addr", d.cfg.LAN1.Prefix)
}

func (d *Daemon) startProbe() {
	if d.deps.ARP == nil || !d.cfg.LAN1.Prefix.IsValid() {
		d.queue(engine.ProbeDone{InUse: false})
		return
	}
	total := d.cfg.LAN1.ProbeTime.Duration
	ip := d.cfg.LAN1.Prefix.Addr()
	d.wg.Go(func() {
		ctx, cancel := context.WithTimeout(d.ctx, 2*total)
		defer cancel()
		// Two probes half the probe time apart, listening until the end.
		t0 := time.Now()
		inUse, holder, err := d.deps.ARP.Probe(ctx, ip, 2, total/2)
		d.log.Debug("ARP probe done", "addr", ip, "in-use", inUse, "took", time.Since(t0))
		if err != nil {
			d.log.Warn("ARP probe failed; treating the address as in use", "err", err)
			inUse = true
		}
		if inUse {
			d.log.Warn("the service address answers ARP", "addr", ip, "holder", holder)
		}
		d.queue(engine.ProbeDone{InUse: inUse})
	})
}

// runHook queues a hook for the hook worker. The role and previous role it
// is told are those of the RoleChanged that follows it in the batch, if
// any: the engine emits a transition's hook before announcing it.
func (d *Daemon) runHook(h engine.RunHook, rest []engine.Action) {
	st := d.eng.Status()
	role, prev := d.role, d.prev
	for _, a := range rest {
		if rc, ok := a.(engine.RoleChanged); ok {
			role, prev = rc.Role, rc.Prev
			break
		}
	}
	env := hooks.Env{
		Event: h.Name, Role: role.String(), PrevRole: prev.String(), Peer: st.Peer.State.String(), Reason: h.Reason,
		Node: d.cfg.NodeName, Mode: st.Mode.String(), Epoch: st.Epoch, Standby: d.cfg.Standby,
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	d.hookq.push(&hookJob{
		runner: hooks.Runner{Dir: d.cfg.Hooks.Dir, Timeout: d.cfg.Hooks.Timeout.Duration},
		env:    env, wait: h.Wait, ctx: ctx, cancel: cancel,
	})
}

func (d *Daemon) logbook(kind, msg string) {
	st := d.eng.Status()
	d.logEntry(logbook.Entry{Kind: kind, Role: st.Role.String(), Epoch: st.Epoch, Message: msg})
}

func (d *Daemon) logEntry(e logbook.Entry) {
	if err := d.book.Add(e); err != nil {
		d.log.Warn("logbook write failed", "err", err)
	}
	d.log.Info(e.Message, "kind", e.Kind, "role", e.Role, "epoch", e.Epoch)
}

func (d *Daemon) goWitness(ctx context.Context) {
	every := d.cfg.LAN1.WitnessEvery.Duration
	ip := d.cfg.LAN1.WitAddr
	d.wg.Go(func() {
		last, first := false, true
		misses := 0
		for ctx.Err() == nil {
			rctx, cancel := context.WithTimeout(ctx, every/2)
			_, err := d.deps.ARP.Resolve(rctx, ip)
			cancel()
			ok := err == nil
			if ok {
				misses = 0
			} else {
				misses++
			}
			// Two misses in a row before the witness counts as lost.
			reach := ok || (!first && last && misses < 2)
			if first || reach != last {
				first, last = false, reach
				d.queue(engine.WitnessChanged{Reachable: reach})
			}
			select {
			case <-ctx.Done():
			case <-time.After(every):
			}
		}
	})
}

// Reload asks the loop to apply a new config (SIGHUP); it gives up when
// ctx ends first (the daemon has stopped).
func (d *Daemon) Reload(ctx context.Context, next *config.Config) {
	select {
	case d.reload <- next:
	case <-ctx.Done():
	}
}

func (d *Daemon) applyReload(next *config.Config) {
	file := next // as written, for the settings-mismatch check
	if d.pair != nil {
		// A taught-in node runs with its record's key and, on a spare,
		// the main's settings.
		if n, _, err := withPairRecord(next); err == nil {
			next = n
		}
		next.Key = d.cfg.Key
	}
	if err := d.cfg.Reloadable(next); err != nil {
		d.logbook("reload", "reload refused: "+err.Error())
		return
	}
	ecfg := next.Engine
	ecfg.NodeID, ecfg.Software, ecfg.Unpaired = d.nodeID, Version, d.cfg.Engine.Unpaired
	next.Engine.Unpaired = ecfg.Unpaired
	if err := d.eng.Reconfigure(ecfg); err != nil {
		d.logbook("reload", "reload refused: "+err.Error())
		return
	}
	d.cfg = next
	d.checkSettings(file)
	d.logbook("reload", "configuration reloaded from "+next.File())
}
