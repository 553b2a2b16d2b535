// Package daemon wires the role engine to Linux: the failover-line sockets,
// the service address, ARP, hooks, the logbook and the control socket. Its
// loop is the only place where time, sockets and goroutines meet the engine.
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
	"github.com/pairguard/pairguard/firmware/config"
	"github.com/pairguard/pairguard/firmware/engine"
	"github.com/pairguard/pairguard/firmware/frame"
	"github.com/pairguard/pairguard/firmware/hooks"
	"github.com/pairguard/pairguard/firmware/logbook"
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
	Links <-chan LinkUpdate
	Panel *Panel // front panel and watchdog (nil: none)
	// Closers are closed when the daemon stops, after the address is released.
	Closers []func() error
}

// LinkUpdate is a link state change of LAN 1 or LAN 2.
type LinkUpdate struct {
	Path engine.Path
	Up   bool
}

// Daemon is one running pairguard node.
type Daemon struct {
	cfg    *config.Config
	log    *slog.Logger
	deps   Deps
	eng    *engine.Engine
	state  stateDir
	book   *logbook.Book
	hooks  *hooks.Runner
	garp   *arp.GARP
	garp6  *arp.GARP
	key    *frame.Key
	replay *frame.Replay
	frames frame.Counters
	start  time.Time
	nodeID uint64
	bootID uint64
	seq    uint64
	buf    []byte
	vmac   net.HardwareAddr // the MAC announced for the service address

	rx     chan received
	events chan engine.Event
	ctl    chan func()
	reload chan *config.Config

	holds        bool // the service address is on the interface
	releaseErr   error
	lastTakeover takeoverInfo
	captures     []*capture
	capturing    atomic.Bool // a capture is running: receivers keep the raw bytes
	mirror       Mirror
	panelDev     *Panel
	panel        *frontPanel
	wire         wireState

	wg sync.WaitGroup
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
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("daemon: state-dir: %w", err)
	}
	d := &Daemon{
		cfg:      cfg,
		log:      log,
		deps:     deps,
		state:    stateDir(cfg.StateDir),
		hooks:    &hooks.Runner{Dir: cfg.Hooks.Dir, Timeout: cfg.Hooks.Timeout.Duration},
		key:      frame.NewKey(cfg.Key),
		replay:   frame.NewReplay(),
		start:    time.Now(),
		rx:       make(chan received, 64),
		events:   make(chan engine.Event, 64),
		ctl:      make(chan func()),
		reload:   make(chan *config.Config, 1),
		buf:      make([]byte, 0, frame.MaxLen),
		mirror:   noMirror{},
		panelDev: deps.Panel,
	}
	var err error
	if d.nodeID, err = d.state.nodeID(); err != nil {
		return nil, err
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
	if d.book, err = logbook.Open(cfg.StateDir, cfg.Logbook.Entries); err != nil {
		return nil, err
	}
	ecfg := cfg.Engine
	ecfg.NodeID = d.nodeID
	ecfg.Software = Version
	ecfg.BootID = d.bootID
	if ecfg.Nonce, err = newNonce(); err != nil {
		return nil, err
	}
	if d.eng, err = engine.New(ecfg, epoch, 0); err != nil {
		return nil, err
	}
	if cfg.Datastore != nil {
		ds, err := newDatastore(cfg, log, d.book, func() uint64 { return d.eng.Status().Epoch })
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
	return d, nil
}

// SetMirror attaches the datastore mirror.
func (d *Daemon) SetMirror(m Mirror) { d.mirror = m }

func (d *Daemon) mono() time.Duration { return time.Since(d.start) }

// Run runs the daemon until ctx ends, then shuts down: a primary hands over
// to its peer (or releases the address) before Run returns.
func (d *Daemon) Run(ctx context.Context) error {
	defer d.book.Close()
	d.cleanStaleAddress()
	loopCtx, stopAll := context.WithCancel(context.Background())
	defer func() {
		stopAll()
		d.wg.Wait()
	}()
	if d.deps.LAN2 != nil {
		d.goRecv(loopCtx, d.deps.LAN2, engine.PathLAN2)
	}
	if d.deps.LAN1 != nil {
		d.goRecv(loopCtx, d.deps.LAN1, engine.PathLAN1)
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
	d.mirror.Start(loopCtx, d.events)
	d.startPanel(loopCtx)
	d.logbook("start", fmt.Sprintf("pairguard %s, node %s (%016x), boot %d", Version, d.cfg.NodeName, d.nodeID, d.bootID))
	d.apply(d.eng.Start(d.mono()))

	tick := time.NewTicker(tickFor(d.cfg.Engine.Interval))
	defer tick.Stop()
	var shutdown <-chan time.Time
	stopping := false
	done := ctx.Done()
	for {
		select {
		case <-done:
			done = nil
			stopping = true
			d.log.Info("stopping", "role", d.eng.Role())
			d.apply(d.eng.Step(d.mono(), engine.CommandIssued{Cmd: engine.CmdShutdown}))
			shutdown = time.After(d.cfg.Hooks.Timeout.Duration + 2*time.Second)
		case <-shutdown:
			d.log.Warn("handover did not finish in time; releasing the address")
			return d.finish()
		case <-tick.C:
			d.apply(d.eng.Tick(d.mono()))
		case r := <-d.rx:
			d.receive(r)
		case ev := <-d.events:
			d.apply(d.eng.Step(d.mono(), ev))
		case lu, ok := <-d.deps.Links:
			if !ok {
				d.deps.Links = nil
				continue
			}
			d.apply(d.eng.Step(d.mono(), engine.LinkChanged{Path: lu.Path, Up: lu.Up}))
		case f := <-d.ctl:
			f()
		case next := <-d.reload:
			d.applyReload(next)
		case ev := <-d.buttonEvents():
			d.pressed(ev)
		}
		d.publishPanel()
		if stopping && d.eng.Role() != engine.RolePrimary {
			return d.finish()
		}
	}
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

// tickFor returns the loop's tick: a quarter of the heartbeat interval,
// between 1 ms and 25 ms.
func tickFor(interval time.Duration) time.Duration {
	return min(max(interval/4, time.Millisecond), 25*time.Millisecond)
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

// apply carries out the engine's actions in order (see the engine's package doc).
func (d *Daemon) apply(acts []engine.Action) {
	skipClaim := false
	for _, a := range acts {
		switch a := a.(type) {
		case engine.ReserveEpoch:
			d.wg.Add(1)
			go func() {
				defer d.wg.Done()
				d.queue(engine.EpochReserved{Epoch: a.Epoch, Err: d.state.raiseEpoch(a.Epoch)})
			}()
		case engine.PersistEpoch:
			if err := d.state.raiseEpoch(a.Epoch); err != nil {
				d.log.Error("cannot persist the epoch; not claiming the address", "epoch", a.Epoch, "err", err)
				skipClaim = true
				d.queue(engine.FaultChanged{Reason: "state-dir-unwritable", Active: true})
			}
		case engine.ClaimAddress:
			if skipClaim {
				continue
			}
			d.claimAddress()
		case engine.ReleaseAddress:
			d.releaseAddress()
		case engine.Send:
			d.send(a)
		case engine.StartProbe:
			d.startProbe()
		case engine.RunHook:
			d.runHook(a)
		case engine.SetMirrorRole:
			d.mirror.SetPrimary(a.Primary, a.NewGeneration)
		case engine.FlushMirror:
			d.wg.Add(1)
			go func() {
				defer d.wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), d.cfg.Hooks.Timeout.Duration)
				defer cancel()
				d.queue(engine.FlushDone{Err: d.mirror.Flush(ctx)})
			}()
		case engine.Log:
			d.logEntry(logbook.Entry{Kind: a.Kind, Role: a.Role.String(), Epoch: a.Epoch, Message: a.Message})
		case engine.AlarmRaised:
			d.log.Warn("alarm", "alarm", string(a.Alarm), "reason", a.Reason)
		case engine.AlarmCleared:
			d.log.Info("alarm cleared", "alarm", string(a.Alarm))
		case engine.RoleChanged:
			st := d.eng.Status()
			d.log.Info("role changed", "role", a.Role, "prev", a.Prev, "epoch", st.Epoch, "peer", st.Peer.State, "reason", a.Reason)
			if a.Role == engine.RolePrimary {
				d.lastTakeover = takeoverInfo{At: time.Now(), Reason: a.Reason, Epoch: st.Epoch}
			}
		default:
			panic(fmt.Sprintf("daemon: unknown action %T", a))
		}
	}
}

// queue feeds an event back to the loop without blocking it.
func (d *Daemon) queue(ev engine.Event) {
	select {
	case d.events <- ev:
	default:
		go func() { d.events <- ev }()
	}
}

func (d *Daemon) claimAddress() {
	d.holds = true
	if d.deps.Addr == nil {
		return
	}
	for _, p := range d.prefixes() {
		if err := d.deps.Addr.Add(p); err != nil {
			d.log.Error("cannot add the service address", "addr", p, "err", err)
			d.queue(engine.FaultChanged{Reason: "address-claim-failed", Active: true})
			return
		}
	}
	if d.garp != nil && d.cfg.LAN1.Prefix.IsValid() {
		d.garp.Start(d.cfg.LAN1.Prefix.Addr(), d.vmac)
	}
	if d.garp6 != nil && d.cfg.LAN1.Prefix6.IsValid() {
		d.garp6.Start(d.cfg.LAN1.Prefix6.Addr(), d.vmac)
	}
	d.log.Info("service address claimed", "addr", d.cfg.LAN1.Prefix, "epoch", d.eng.Status().Epoch)
}

func (d *Daemon) releaseAddress() {
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
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 2*total)
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
	}()
}

func (d *Daemon) runHook(h engine.RunHook) {
	st := d.eng.Status()
	env := hooks.Env{
		Event: h.Name, Role: st.Role.String(), Peer: st.Peer.State.String(), Reason: h.Reason,
		Node: d.cfg.NodeName, Mode: st.Mode.String(), Epoch: st.Epoch,
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		out, err := d.hooks.Run(context.Background(), env)
		if out != "" {
			d.log.Info("hook output", "hook", h.Name, "output", out)
		}
		if err != nil {
			d.log.Warn("hook failed", "hook", h.Name, "err", err)
		}
		if h.Wait || err != nil {
			d.queue(engine.HookDone{Name: h.Name, Err: err})
		}
	}()
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
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
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
	}()
}

// Reload asks the loop to apply a new config (SIGHUP).
func (d *Daemon) Reload(next *config.Config) { d.reload <- next }

func (d *Daemon) applyReload(next *config.Config) {
	if err := d.cfg.Reloadable(next); err != nil {
		d.logbook("reload", "reload refused: "+err.Error())
		return
	}
	ecfg := next.Engine
	ecfg.NodeID, ecfg.Software = d.nodeID, Version
	if err := d.eng.Reconfigure(ecfg); err != nil {
		d.logbook("reload", "reload refused: "+err.Error())
		return
	}
	d.hooks = &hooks.Runner{Dir: next.Hooks.Dir, Timeout: next.Hooks.Timeout.Duration}
	d.cfg = next
	d.logbook("reload", "configuration reloaded from "+next.File())
}
