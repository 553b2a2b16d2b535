// Package engine is Pairguard's role engine: a deterministic state machine
// that decides which node of a pair is primary.
//
// The engine has no goroutines, sockets or clocks. The daemon feeds it events
// (Step) and ticks (Tick), both carrying the current monotonic time, and
// carries out the actions they return, in order. The order matters:
//
//   - becoming primary: PersistEpoch (write and fsync the epoch; left out
//     when the reserved record of a ReserveEpoch already holds it), then
//     ClaimAddress (add the address, announce it with gratuitous ARP),
//     then Send (tell the peer at once), then RecordEpoch (the epoch
//     written in the background, when the reserved record covered the
//     claim), then SetMirrorRole, RunHook to-primary, Log and RoleChanged;
//   - leaving primary: ReleaseAddress first, before anything tells the peer
//     or an operator that the node is no longer primary, then SetMirrorRole,
//     RunHook to-secondary, Log and RoleChanged;
//   - planned handover: RunHook to-secondary (waited for, HookDone), then
//     FlushMirror (waited for, FlushDone), then ReleaseAddress, then Send of
//     RELEASE frames on both paths.
//
// An action that needs an answer (StartProbe, RunHook with Wait, FlushMirror)
// is answered later with an event (ProbeDone, HookDone, FlushDone).
//
// Epochs on disk. The current epoch (Status, frames) is the one the node
// last claimed or adopted; the daemon keeps it in the state dir. Apart
// from it, a secondary following a live peer keeps the epoch its next claim
// would take reserved in a record of its own (ReserveEpoch, in the
// background, as soon as it is needed: peer up, a new epoch adopted), so
// that the claim finds it on disk and does not wait for an fsync. The
// reserved epoch is never shown as the current one. At a start the daemon
// passes it as Config.ReservedEpoch: it may have been claimed before a
// crash, so no claim of this run takes it or a lower one.
//
// Frames. Send carries the PeerInfo to put on the wire; FrameReceived
// brings the peer's. Every frame carries the sender's nonce, drawn at each
// start (Config.Nonce), and echoes the last nonce the sender heard from its
// peer. Freshness: a frame that does not echo this node's nonce proves
// nothing about the peer now (it may have been recorded before this node
// started); it moves nothing and is answered with a heartbeat when its
// nonce is new to this node, so that the peer can prove itself within a
// round trip. Reflections: a frame with this node's id and nonce (or an
// older boot id) is its own, sent back; dropped (FrameDropped) and never an
// alarm. A frame with this node's id that it did not send raises
// duplicate-node-id, which clears after connection-wait-time without one.
package engine

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// Config is what the engine needs to know from the configuration.
type Config struct {
	Mode       Mode
	NodeID     uint64
	Preferred  bool // this node is the preferred primary (automatic recovery returns to it)
	Recovery   Recovery
	OnLineLoss LineLoss
	Witness    bool // a witness is configured: without it a node is never primary
	Arbiter    ArbiterConfig
	Software   string
	// BootID and Nonce identify this start of the node: the persisted boot
	// counter and a random value, not zero in main or spare mode. They are
	// fixed by New; Reconfigure keeps them.
	BootID uint64
	Nonce  uint64
	// ReservedEpoch is the reserved record on disk at this start (see the
	// package doc): a floor for every claim of this run, which takes a
	// higher epoch. Fixed by New; Reconfigure keeps it.
	ReservedEpoch uint64
	Durations

	// Unpaired: the node has no pair key yet (teach-in pending). It is
	// never eligible, so it never becomes primary by itself; Reconfigure
	// clears it once the pair key is known.
	Unpaired bool
}

// Validate checks the config and the relations between its timers.
func (c *Config) Validate() error {
	var errs []error
	if c.Mode == modeInvalid || c.Mode > ModeSpare {
		errs = append(errs, fmt.Errorf("mode: invalid value %d", c.Mode))
	}
	if c.Recovery == recoveryInvalid || c.Recovery > RecoveryManual {
		errs = append(errs, fmt.Errorf("recovery: invalid value %d", c.Recovery))
	}
	if c.OnLineLoss == lineLossInvalid || c.OnLineLoss > LineLossTakeover {
		errs = append(errs, fmt.Errorf("on-line-loss: invalid value %d", c.OnLineLoss))
	}
	if c.Mode == ModeIndependent {
		return errors.Join(errs...)
	}
	d := c.Durations
	errs = append(errs, c.Arbiter.validate(d))
	switch {
	case d.Interval <= 0:
		errs = append(errs, errors.New("heartbeat.interval: must be positive"))
	case d.FailoverTime < 2*d.Interval:
		errs = append(errs, fmt.Errorf("heartbeat.failover-time: %v must be at least twice heartbeat.interval (%v)", d.FailoverTime, d.Interval))
	}
	if d.LAN1Interval <= 0 || 2*d.LAN1Interval > d.FailoverTime {
		errs = append(errs, fmt.Errorf("heartbeat.lan1-interval: %v must be positive and at most half of heartbeat.failover-time (%v)", d.LAN1Interval, d.FailoverTime))
	}
	if d.ConnectionWait < d.FailoverTime {
		errs = append(errs, fmt.Errorf("heartbeat.connection-wait-time: %v must be at least heartbeat.failover-time (%v)", d.ConnectionWait, d.FailoverTime))
	}
	if d.ProbeTimeout < 0 || 3*d.ProbeTimeout > d.FailoverTime {
		errs = append(errs, fmt.Errorf("lan1.probe-time: %v must be at most a third of heartbeat.failover-time (%v)", d.ProbeTimeout, d.FailoverTime))
	}
	if c.NodeID == 0 {
		errs = append(errs, errors.New("node id must not be zero"))
	}
	return errors.Join(errs...)
}

// Engine is the role engine of one node. It is not safe for concurrent use.
type Engine struct {
	cfg Config
	now time.Duration

	role      Role
	roleSince time.Duration
	epoch     uint64
	onDisk    uint64 // the highest epoch known to be on stable storage (or being written after a covered claim)
	reserved  uint64 // the highest epoch in the reserved record (ReserveEpoch done)
	reserving bool   // a ReserveEpoch is under way
	// reserveAfter: a reservation failed; the next one waits until then
	// (a claim meanwhile persists its epoch on the critical path).
	reserveAfter time.Duration

	peer       PeerInfo
	peerHeard  bool
	heardLAN2  time.Duration // last valid frame on LAN 2
	heardLAN1  time.Duration // last valid frame on LAN 1
	everLAN2   bool
	everLAN1   bool
	peerUpAt   time.Duration // when the peer last came up
	peerState  PeerState
	notPrimary time.Duration // since when a live peer has not been primary while we are secondary
	lan2Epoch  uint64        // the peer's epoch in its last frame on LAN 2
	incompat   time.Duration // last incompatible frame
	everIncomp bool
	echo       uint64        // the nonce of the last frame that passed the replay window (0: none)
	duplicate  time.Duration // last frame of another node with this node's id

	data       DataState
	generation uint64
	history    uint64
	mirror     MirrorState
	percent    uint8

	faults    map[string]bool
	alarms    map[Alarm]bool // value: acknowledged
	witnessOK bool
	lan1Up    bool
	lan2Up    bool
	healthy   bool

	probing      bool
	probeStarted time.Duration
	probeResult  *probeResult

	handover       bool // a planned handover is under way
	handoverReason string
	stepDown       bool // the handover has no taker: no flush, no RELEASE
	failback       bool // we took over by failure; hand back when the preferred main returns
	failoverLit    bool
	redundant      bool // redundancy active was last logged

	nextLAN2 time.Duration
	nextLAN1 time.Duration

	lease leaseState

	// out collects the actions of one call; flush hands it out and the
	// next call fills the other buffer (bufs), so that a step allocates
	// nothing at steady state (issue 15: no allocation per heartbeat).
	// The daemon consumes a call's actions before its next call.
	out  []Action
	bufs [2][]Action
	flip int
	// sent holds the last Send boxed as an Action for each combination
	// of paths (heartbeats on LAN 2 alone and on both alternate): a
	// heartbeat that says what the previous one said reuses it instead of
	// boxing a copy.
	sent [4]struct {
		boxed Action
		v     Send
	}
}

type probeResult struct {
	started time.Duration
	inUse   bool
}

// New returns an engine in role starting (standalone in independent mode).
// epoch is the persisted epoch.
func New(cfg Config, epoch uint64, now time.Duration) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Mode != ModeIndependent && cfg.Nonce == 0 {
		return nil, errors.New("engine: a node of a pair needs a nonzero nonce")
	}
	e := &Engine{
		cfg:       cfg,
		now:       now,
		epoch:     epoch,
		onDisk:    epoch,
		reserved:  cfg.ReservedEpoch,
		peerState: PeerUnknown,
		data:      DataUpToDate,
		mirror:    MirrorOff,
		faults:    map[string]bool{},
		alarms:    map[Alarm]bool{},
		witnessOK: !cfg.Witness,
		lan1Up:    true,
		lan2Up:    true,
		healthy:   true,
	}
	e.role = RoleStarting
	e.roleSince = now
	return e, nil
}

// Start returns the first actions: in independent mode the node is
// standalone and claims the address at once.
func (e *Engine) Start(now time.Duration) []Action {
	e.now = now
	if e.cfg.Mode == ModeIndependent {
		e.emit(ClaimAddress{})
		e.setRole(RoleStandalone, "independent mode")
		return e.flush()
	}
	e.emit(Log{Kind: "start", Message: fmt.Sprintf("starting as %s, epoch %d, waiting up to %v for the peer", e.cfg.Mode, e.epoch, e.cfg.ConnectionWait)})
	e.sendHeartbeat(true, true)
	return e.flush()
}

// Reconfigure applies the parts of a new config that can change while running.
func (e *Engine) Reconfigure(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if cfg.Mode != e.cfg.Mode || cfg.NodeID != e.cfg.NodeID {
		return errors.New("engine: mode and node id cannot change without a restart")
	}
	if cfg.Witness != e.cfg.Witness {
		e.witnessOK = !cfg.Witness
	}
	cfg.BootID, cfg.Nonce, cfg.ReservedEpoch = e.cfg.BootID, e.cfg.Nonce, e.cfg.ReservedEpoch
	taught := e.cfg.Unpaired && !cfg.Unpaired
	e.cfg = cfg
	if taught && (e.role == RoleStarting || e.role == RoleSecondary) {
		// Just taught in: the peer's frames were unreadable until now, so
		// its silence says nothing. Wait for it as at a start (rule 6), or
		// the unit whose accept landed first would claim at once as alone.
		e.setRole(RoleStarting, "paired: waiting for the peer")
		e.peerState = PeerUnknown
	}
	return nil
}

// emit queues actions, stamping log entries with the role and epoch of
// the moment they describe.
func (e *Engine) emit(acts ...Action) {
	for _, a := range acts {
		if l, ok := a.(Log); ok {
			l.Role, l.Epoch = e.role, e.epoch
			a = l
		}
		e.out = append(e.out, a)
	}
}

func (e *Engine) flush() []Action {
	out := e.out
	if len(out) == 0 {
		return nil
	}
	// Keep the (possibly grown) buffer, hand out this one, fill the other
	// next time: the caller's slice stays valid until the call after next.
	e.bufs[e.flip] = out[:0]
	e.flip ^= 1
	e.out = e.bufs[e.flip][:0]
	return out
}

// emitSend queues s, reusing the boxed value of the last Send when s is
// equal to it (the common heartbeat): boxing a Send allocates.
func (e *Engine) emitSend(s Send) {
	c := &e.sent[b2i(s.LAN2)|b2i(s.LAN1)<<1]
	if c.boxed == nil || s != c.v {
		c.boxed, c.v = s, s
	}
	e.out = append(e.out, c.boxed)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Status returns a snapshot of the engine's state.
func (e *Engine) Status() Status {
	s := Status{
		Mode:        e.cfg.Mode,
		Role:        e.role,
		Since:       e.roleSince,
		Epoch:       e.epoch,
		NodeID:      e.cfg.NodeID,
		Preferred:   e.cfg.Preferred,
		Eligible:    e.eligible(),
		Handover:    e.handover,
		Data:        e.data,
		Generation:  e.generation,
		History:     e.history,
		Mirror:      e.mirror,
		Percent:     e.percent,
		FailoverLit: e.failoverLit,
		LAN1Up:      e.lan1Up,
		LAN2Up:      e.lan2Up,
		Witness:     e.witnessOK,
		Software:    e.cfg.Software,
		Arbiter:     e.arbiterStatus(),
	}
	for a, acked := range e.alarms {
		s.Alarms = append(s.Alarms, a)
		if !acked {
			s.Unacked = true
		}
	}
	slices.Sort(s.Alarms)
	for f := range e.faults {
		s.Faults = append(s.Faults, f)
	}
	slices.Sort(s.Faults)
	s.Peer = PeerStatus{State: e.peerState}
	if e.peerHeard {
		p := e.peer
		s.Peer.Seq, s.Peer.NodeID, s.Peer.Role, s.Peer.Epoch = p.Seq, p.NodeID, p.Role, p.Epoch
		s.Peer.Data, s.Peer.Mirror, s.Peer.Software = p.Data, p.Mirror, p.Software
		s.Peer.LAN1 = e.recent(e.everLAN1, e.heardLAN1)
		s.Peer.LAN2 = e.recent(e.everLAN2, e.heardLAN2)
	}
	if e.everLAN2 && e.cfg.Interval > 0 {
		s.Peer.Missed = int((e.now - e.heardLAN2) / e.cfg.Interval)
	} else if e.peerState != PeerUnknown && e.cfg.Interval > 0 {
		s.Peer.Missed = int((e.now - e.roleSince) / e.cfg.Interval)
	}
	return s
}

// Now returns the time of the last Step, StepFrame or Tick: the engine's
// time only goes forward, so a caller dating an event in the past (a
// frame's arrival) dates it no earlier.
func (e *Engine) Now() time.Duration { return e.now }

// Role returns the current role.
func (e *Engine) Role() Role { return e.role }

// recent reports whether a frame heard at t is within failover-time.
func (e *Engine) recent(ever bool, t time.Duration) bool {
	return ever && e.now-t < e.cfg.FailoverTime
}

func (e *Engine) peerAlive() bool {
	return e.recent(e.everLAN2, e.heardLAN2) || e.recent(e.everLAN1, e.heardLAN1)
}

func (e *Engine) incompatibleRecent() bool {
	return e.everIncomp && e.now-e.incompat < e.cfg.FailoverTime
}

// eligible reports whether this node may become primary without force.
func (e *Engine) eligible() bool {
	return e.data == DataUpToDate && e.witnessOK && len(e.faults) == 0 && e.cfg.Mode != ModeIndependent && !e.cfg.Unpaired
}

// Step feeds one event to the engine and returns the actions it causes.
// StepFrame is Step for a FrameReceived, without putting the frame in an
// Event interface (a heap allocation for every heartbeat received).
func (e *Engine) StepFrame(now time.Duration, ev FrameReceived) []Action {
	e.now = now
	if e.role == RoleStandalone {
		return nil
	}
	e.stepFrame(ev)
	e.evaluate()
	return e.flush()
}

func (e *Engine) Step(now time.Duration, ev Event) []Action {
	e.now = now
	if e.role == RoleStandalone {
		return nil
	}
	switch ev := ev.(type) {
	case FrameReceived:
		e.stepFrame(ev)
	case PeerIncompatible:
		e.incompat, e.everIncomp = now, true
		e.raise(AlarmIncompatiblePeer, fmt.Sprintf("peer speaks protocol %d on %s", ev.Version, ev.Path))
	case LinkChanged:
		if ev.Path == PathLAN1 {
			e.lan1Up = ev.Up
		} else {
			e.lan2Up = ev.Up
		}
		e.emit(Log{Kind: "link", Message: fmt.Sprintf("%s link %s", ev.Path, upDown(ev.Up))})
	case ProbeDone:
		e.probing = false
		e.probeResult = &probeResult{started: e.probeStarted, inUse: ev.InUse}
	case WitnessChanged:
		e.witnessOK = ev.Reachable || !e.cfg.Witness
		if e.witnessOK {
			e.clear(AlarmWitnessLost)
		} else {
			e.raise(AlarmWitnessLost, "the witness does not answer ARP")
			if e.role == RolePrimary {
				e.demote(RoleSecondary, "witness unreachable")
			}
		}
	case DataChanged:
		e.data, e.generation, e.history = ev.State, ev.Generation, ev.History
		if e.data == DataUpToDate {
			e.clear(AlarmNoUpToDateData)
		}
	case MirrorChanged:
		e.mirror, e.percent = ev.State, ev.Percent
		if ev.State == MirrorSplitBrain {
			e.raise(AlarmSplitBrain, "generation identifiers diverged")
		} else {
			e.clear(AlarmSplitBrain)
		}
	case FaultChanged:
		e.stepFault(ev)
	case CheckChanged:
		e.healthy = ev.Healthy
		if ev.Healthy {
			e.clear(AlarmCheckFailed)
		} else {
			e.raise(AlarmCheckFailed, "health check "+ev.Name+" failed")
		}
	case CommandIssued:
		e.stepCommand(ev.Cmd)
	case HookDone:
		if ev.Err != nil {
			e.raise(AlarmHookFailed, fmt.Sprintf("hook %s: %v", ev.Name, ev.Err))
		}
		if e.handover && ev.Name == "to-secondary" {
			if e.stepDown {
				e.finishHandover(nil)
			} else {
				e.emit(FlushMirror{})
			}
		}
	case FlushDone:
		if e.handover {
			e.finishHandover(ev.Err)
		}
	case LeaseChanged:
		e.stepLease(ev)
	case EpochReserved:
		e.reserving = false
		if ev.Err == nil {
			e.reserved = max(e.reserved, ev.Epoch)
		} else {
			// Not on disk: a claim meanwhile persists its epoch before
			// the address, as without a reservation. Try again later,
			// not at every tick of a failing card.
			e.reserveAfter = e.now + e.cfg.ConnectionWait
		}
	default:
		panic(fmt.Sprintf("engine: unknown event %T in role %s", ev, e.role))
	}
	e.evaluate()
	return e.flush()
}

// Tick advances time: heartbeats fall due, the peer goes silent, waits end.
func (e *Engine) Tick(now time.Duration) []Action {
	e.now = now
	if e.role == RoleStandalone {
		return nil
	}
	e.evaluate()
	return e.flush()
}

func (e *Engine) stepFrame(ev FrameReceived) {
	p := ev.Peer
	if p.NodeID == e.cfg.NodeID {
		if p.Nonce == e.cfg.Nonce || p.BootID < e.cfg.BootID {
			// Our own frame, sent back (a loop, or a host that reflects
			// it): nothing to say about any peer.
			e.emit(FrameDropped{Reason: DropReflected})
			return
		}
		e.duplicate = e.now
		e.raise(AlarmDuplicateNodeID, fmt.Sprintf("node with this node's id, boot %d, on %s", p.BootID, ev.Path))
		return
	}
	if p.Nonce != e.echo {
		// A new start of the peer (or the first frame heard): answer at
		// once so that it can prove its frames fresh within a round trip.
		e.echo = p.Nonce
		e.sendHeartbeat(true, true)
	}
	if p.Echo != e.cfg.Nonce {
		e.emit(FrameDropped{Reason: DropStale})
		return
	}
	e.peer, e.peerHeard = p, true
	if ev.Path == PathLAN2 {
		e.heardLAN2, e.everLAN2 = e.now, true
		e.lan2Epoch = p.Epoch
		e.clear(AlarmFailoverLineDown)
	} else {
		e.heardLAN1, e.everLAN1 = e.now, true
	}
	if p.Software != e.cfg.Software {
		e.raise(AlarmVersionMismatch, fmt.Sprintf("peer runs %s, this node %s", p.Software, e.cfg.Software))
	} else {
		e.clear(AlarmVersionMismatch)
	}
	e.clear(AlarmAddressInUse)
	if p.Role == RolePrimary || p.Kind == FrameRelease {
		e.notPrimary = e.now
	}
	switch e.role {
	case RolePrimary:
		if p.Role != RolePrimary {
			return
		}
		if p.Epoch > e.epoch || (p.Epoch == e.epoch && e.better(p) < 0) {
			e.demote(RoleSecondary, fmt.Sprintf("peer is primary with epoch %d", p.Epoch))
			e.adoptEpoch(p.Epoch)
		} else {
			// Tell the stale primary at once that it must step down.
			e.sendHeartbeat(true, true)
		}
	case RoleStarting, RoleSecondary:
		if p.Role == RolePrimary {
			e.adoptEpoch(p.Epoch)
			if e.role == RoleStarting {
				e.setRole(RoleSecondary, "peer is primary")
			}
			return
		}
		if p.Kind == FrameRelease && e.eligible() {
			e.becomePrimary("planned handover from the peer", false)
		}
	}
}

func (e *Engine) stepFault(ev FaultChanged) {
	if ev.Active == e.faults[ev.Reason] {
		return
	}
	if ev.Active {
		e.faults[ev.Reason] = true
		e.emit(Log{Kind: "fault", Message: ev.Reason})
		if e.role != RoleFault {
			if e.role == RolePrimary {
				e.demote(RoleFault, ev.Reason)
			} else {
				e.setRole(RoleFault, ev.Reason)
			}
			e.emit(RunHook{Name: "fault", Reason: ev.Reason})
		}
		return
	}
	delete(e.faults, ev.Reason)
	e.emit(Log{Kind: "fault-cleared", Message: ev.Reason})
	if len(e.faults) == 0 && e.role == RoleFault {
		e.setRole(RoleSecondary, "fault cleared: "+ev.Reason)
	}
}

func (e *Engine) stepCommand(c Command) {
	switch c {
	case CmdAcknowledge:
		for a := range e.alarms {
			e.alarms[a] = true
		}
		e.failoverLit = false
		e.emit(Log{Kind: "acknowledge", Message: "alarms acknowledged"})
	case CmdForceTakeover:
		if e.role == RolePrimary {
			return
		}
		e.becomePrimary("forced by the operator", false)
		e.lease.forced = true
	case CmdSwap:
		if e.role != RolePrimary {
			e.emit(Log{Kind: "swap-refused", Message: "swap: this node is not primary"})
			return
		}
		if why := e.peerCannotTake(); why != "" {
			e.emit(Log{Kind: "swap-refused", Message: "swap: " + why})
			return
		}
		e.startHandover("swap requested by the operator")
	case CmdShutdown:
		if e.role != RolePrimary || e.handover {
			return
		}
		if e.peerCannotTake() == "" {
			e.startHandover("the daemon is stopping")
			return
		}
		// Nobody takes over, but the node still steps down in order: the
		// to-secondary hook runs (and is waited for) while the datastore
		// is still served, so that it can stop the services and unmount a
		// filesystem on the NBD device before the export goes away.
		e.startHandover("the daemon is stopping and the peer cannot take over")
		e.stepDown = true
	default:
		panic(fmt.Sprintf("engine: unknown command %d in role %s", c, e.role))
	}
}

// evaluate applies the time-driven rules.
func (e *Engine) evaluate() {
	if _, ok := e.alarms[AlarmDuplicateNodeID]; ok && e.now-e.duplicate >= e.cfg.ConnectionWait {
		e.clear(AlarmDuplicateNodeID)
	}
	e.updatePeerState()
	e.updateRedundancy()
	switch e.role {
	case RoleStarting:
		e.evalStarting()
	case RoleSecondary:
		e.evalSecondary()
	case RolePrimary:
		e.evalPrimary()
	case RoleFault:
	default:
		panic(fmt.Sprintf("engine: evaluate in impossible role %s", e.role))
	}
	e.evalLease()
	e.reserveEpoch()
	e.heartbeats()
}

// nextEpoch is the epoch the next claim takes: above the current one, the
// peer's, and the reserved record found at the start (claimed, perhaps,
// before a crash).
func (e *Engine) nextEpoch() uint64 {
	return max(e.epoch, e.peer.Epoch, e.cfg.ReservedEpoch) + 1
}

// reserveEpoch keeps the next claim's epoch in the reserved record while
// the node is a secondary following a live peer (up, or falling silent
// but not yet down): the fsync is then done long before a takeover, not on
// it. Not with the peer down or unknown: a node that steps down alone (at
// a stop) would only raise the floor of its next start.
func (e *Engine) reserveEpoch() {
	if e.role != RoleSecondary || e.peerState != PeerUp || !e.peerHeard || e.reserving || e.now < e.reserveAfter {
		return
	}
	if want := e.nextEpoch(); e.reserved < want && e.onDisk < want {
		e.reserving = true
		e.emit(ReserveEpoch{Epoch: want})
	}
}

func (e *Engine) updatePeerState() {
	alive := e.peerAlive() || e.incompatibleRecent()
	switch {
	case alive && e.peerState != PeerUp:
		e.peerState = PeerUp
		e.peerUpAt = e.now
		e.emit(Log{Kind: "peer-up", Message: fmt.Sprintf("peer %016x is up (%s, epoch %d)", e.peer.NodeID, e.peer.Role, e.peer.Epoch)})
	case !alive && e.peerState == PeerUp:
		e.peerState = PeerDown
		e.emit(Log{Kind: "peer-down", Message: fmt.Sprintf("peer silent for %v", e.cfg.FailoverTime)})
		if e.role == RolePrimary {
			// A primary that loses its peer writes under a new data
			// generation, so that a peer that took over meanwhile is
			// found as a split brain, not silently overwritten.
			e.emit(SetMirrorRole{Primary: true, NewGeneration: true})
		}
	case !alive && e.peerState == PeerUnknown && e.now-e.roleSince >= e.cfg.ConnectionWait:
		e.peerState = PeerDown
	}
	// Only the failover line is silent: the second path still carries the
	// peer, with frames sent well after the last one on LAN 2 (a dead peer's
	// last LAN 1 frame may trail its last LAN 2 frame, but not by half a
	// failover-time: lan1-interval is at most that).
	if e.peerState == PeerUp && e.everLAN2Silent() && e.recent(e.everLAN1, e.heardLAN1) &&
		(!e.everLAN2 || e.heardLAN1-e.heardLAN2 >= e.cfg.FailoverTime/2) {
		e.raise(AlarmFailoverLineDown, "peer heard on LAN 1 only")
	}
}

// everLAN2Silent reports whether LAN 2 has carried nothing for failover-time.
func (e *Engine) everLAN2Silent() bool {
	if e.everLAN2 {
		return e.now-e.heardLAN2 >= e.cfg.FailoverTime
	}
	return e.now-e.roleSince >= e.cfg.FailoverTime
}

func (e *Engine) updateRedundancy() {
	active := e.peerState == PeerUp && (e.role == RolePrimary || e.role == RoleSecondary) &&
		(e.peer.Role == RolePrimary || e.peer.Role == RoleSecondary) && e.peer.Role != e.role
	if active == e.redundant {
		return
	}
	e.redundant = active
	if active {
		e.emit(Log{Kind: "redundancy-active", Message: fmt.Sprintf("%s with peer %s", e.role, e.peer.Role)})
	} else {
		e.emit(Log{Kind: "redundancy-lost", Message: fmt.Sprintf("role %s, peer %s", e.role, e.peerState)})
	}
}

func (e *Engine) evalStarting() {
	if e.peerAlive() {
		if e.peer.Role == RolePrimary {
			e.setRole(RoleSecondary, "peer is primary")
			return
		}
		if e.peer.Role == RoleStarting || e.peer.Role == RoleSecondary || e.peer.Role == RoleFault {
			e.elect("both nodes starting")
		}
		return
	}
	if e.incompatibleRecent() {
		return
	}
	if e.now-e.roleSince < e.cfg.ConnectionWait {
		return
	}
	// Alone after connection-wait-time.
	if !e.eligible() {
		e.refuse()
		e.setRole(RoleSecondary, "alone after connection-wait-time, not eligible")
		return
	}
	if e.guardAllows("alone after connection-wait-time", e.roleSince) {
		e.becomePrimary("alone after connection-wait-time", false)
	}
}

func (e *Engine) evalSecondary() {
	silentSince := e.roleSince
	if e.everLAN2 && e.heardLAN2 > silentSince {
		silentSince = e.heardLAN2
	}
	if e.everLAN1 && e.heardLAN1 > silentSince {
		silentSince = e.heardLAN1
	}
	silent := e.now - silentSince
	// Start the probe twice probe-time before failover-time is up (the probe
	// listens for probe-time; the rest covers opening its socket), so that
	// the answer is in when the decision falls due: it adds no delay.
	fresh := e.probeResult != nil && e.probeResult.started >= silentSince
	if e.eligible() && !e.incompatibleRecent() && silent >= e.cfg.FailoverTime-2*e.cfg.ProbeTimeout {
		if e.cfg.OnLineLoss == LineLossProbe && !e.probing && !fresh {
			e.startProbe()
		}
	}
	if e.peerAlive() || e.incompatibleRecent() {
		if e.peer.Role == RolePrimary {
			// Only LAN 2 silent: a cut failover line. Take over only by
			// policy, and only from the primary last heard on LAN 2: a
			// primary with a newer epoch took over after the cut (from
			// this node, perhaps) and is followed, or the two would take
			// the role from each other for ever.
			if e.everLAN2Silent() && e.cfg.OnLineLoss == LineLossTakeover && e.eligible() &&
				e.peer.Epoch <= e.lan2Epoch {
				e.becomePrimary("failover line silent, on-line-loss = takeover", true)
			}
			return
		}
		// A live peer that is not primary: if nobody has been primary for
		// failover-time (a lost RELEASE, a demoted primary), elect one.
		if !e.peer.Handover && e.peer.Role != RoleStarting &&
			e.now-e.notPrimary >= e.cfg.FailoverTime && e.now-e.roleSince >= e.cfg.FailoverTime {
			e.elect("no primary in the pair")
		}
		return
	}
	if silent < e.cfg.FailoverTime {
		return
	}
	if !e.eligible() {
		e.refuse()
		return
	}
	if e.guardAllows(fmt.Sprintf("peer silent for %v", silent), silentSince) {
		e.becomePrimary(fmt.Sprintf("peer silent for %v", silent.Round(time.Millisecond)), true)
	}
}

// guardAllows runs the split-brain guard before a claim: with on-line-loss =
// probe the service address must have been probed free after since.
func (e *Engine) guardAllows(reason string, since time.Duration) bool {
	if !e.leaseAllows() {
		return false
	}
	if e.cfg.OnLineLoss == LineLossTakeover {
		return true
	}
	if e.probeResult == nil || e.probeResult.started < since {
		if !e.probing {
			e.startProbe()
		}
		return false
	}
	if e.probeResult.inUse && e.probeResult.started < since+e.cfg.FailoverTime {
		// The probe started before failover-time was up: the answer may
		// have come from the peer in its last moments (at 2 ms x 3 a
		// heartbeat late by 1.6 ms starts the probe). Ask once more
		// before refusing, instead of a whole failover-time later.
		e.probeResult = nil
		if !e.probing {
			e.startProbe()
		}
		return false
	}
	if e.probeResult.inUse {
		e.raise(AlarmAddressInUse, reason+", but the service address answers ARP")
		// Probe again after another failover-time.
		if e.now-e.probeResult.started >= e.cfg.FailoverTime {
			e.probeResult = nil
		}
		return false
	}
	return true
}

func (e *Engine) startProbe() {
	e.probing = true
	e.probeStarted = e.now
	e.emit(StartProbe{})
}

func (e *Engine) refuse() {
	switch {
	case e.data != DataUpToDate:
		e.raise(AlarmNoUpToDateData, fmt.Sprintf("data is %s", e.data))
	case !e.witnessOK:
		e.raise(AlarmWitnessLost, "the witness does not answer ARP")
	}
}

func (e *Engine) evalPrimary() {
	if e.handover {
		return
	}
	if !e.healthy {
		if why := e.peerCannotTake(); why == "" {
			e.startHandover("health check failed")
		}
		return
	}
	if e.failback && e.cfg.Recovery == RecoveryAutomatic && !e.cfg.Preferred &&
		e.peer.Preferred && e.peerState == PeerUp && e.now-e.peerUpAt >= e.cfg.ConnectionWait &&
		e.peerCannotTake() == "" && (e.peer.Mirror == MirrorInSync || (e.peer.Mirror == MirrorOff && e.mirror == MirrorOff)) {
		e.startHandover("the preferred main is back and in sync")
	}
}

// peerCannotTake says why the peer cannot take the primary role now ("" if it can).
func (e *Engine) peerCannotTake() string {
	switch {
	case e.peerState != PeerUp || !e.recent(e.everLAN2, e.heardLAN2):
		return "the peer is not reachable on the failover line"
	case e.peer.Role != RoleSecondary:
		return fmt.Sprintf("the peer is %s", e.peer.Role)
	case !e.peer.Eligible || e.peer.Data != DataUpToDate:
		return fmt.Sprintf("the peer's data is %s", e.peer.Data)
	case e.mirror == MirrorSyncing || e.mirror == MirrorBehind:
		return fmt.Sprintf("the mirror is %s", e.mirror)
	}
	return ""
}

func (e *Engine) startHandover(reason string) {
	e.handover = true
	e.handoverReason = reason
	e.emit(
		Log{Kind: "handover", Message: "handing over: " + reason},
		RunHook{Name: "to-secondary", Reason: reason, Wait: true})
	e.sendHeartbeat(true, true)
}

func (e *Engine) finishHandover(flushErr error) {
	if flushErr != nil {
		e.emit(Log{Kind: "handover", Message: "mirror flush failed: " + flushErr.Error()})
	}
	e.handover = false
	e.failback = false
	e.emit(ReleaseAddress{})
	prev := e.role
	e.role, e.roleSince = RoleSecondary, e.now
	e.notPrimary = e.now
	if !e.stepDown {
		// The RELEASE says what this node is now: a secondary.
		e.emit(Send{Info: e.info(FrameRelease), LAN2: true, LAN1: true})
	}
	e.stepDown = false
	e.emit(
		SetMirrorRole{Primary: false},
		Log{Kind: "handover", Message: "released the service address: " + e.handoverReason},
		RoleChanged{Role: RoleSecondary, Prev: prev, Reason: e.handoverReason})
}

// elect applies rule 6 between this node and a live, non-primary peer.
func (e *Engine) elect(reason string) {
	if !e.eligible() {
		e.refuse()
		if e.role == RoleStarting {
			e.setRole(RoleSecondary, reason+": this node is not eligible")
		}
		return
	}
	if e.better(e.peer) > 0 {
		e.becomePrimary(reason+": elected", false)
	} else if e.role == RoleStarting {
		e.setRole(RoleSecondary, reason+": the peer is elected")
	}
}

// better compares this node with the peer by rule 6: eligibility, newer data,
// the main, the lower node id. It returns 1 if this node wins, -1 if the peer does.
func (e *Engine) better(p PeerInfo) int {
	peerOK := p.Eligible && p.Role != RoleFault
	if e.eligible() != peerOK {
		return cmpBool(e.eligible())
	}
	if (e.data == DataUpToDate) != (p.Data == DataUpToDate) {
		return cmpBool(e.data == DataUpToDate)
	}
	if e.generation != p.Generation {
		if p.History == e.generation && p.Generation != 0 {
			return -1
		}
		if e.history == p.Generation && e.generation != 0 {
			return 1
		}
	}
	if (e.cfg.Mode == ModeMain) != (p.Mode == ModeMain) {
		return cmpBool(e.cfg.Mode == ModeMain)
	}
	if e.cfg.NodeID < p.NodeID {
		return 1
	}
	return -1
}

func cmpBool(b bool) int {
	if b {
		return 1
	}
	return -1
}

func (e *Engine) adoptEpoch(epoch uint64) {
	if epoch > e.epoch {
		e.epoch = epoch
		if e.onDisk < epoch {
			e.onDisk = epoch
			e.emit(PersistEpoch{Epoch: epoch})
		}
	}
}

// becomePrimary claims the primary role. failure marks a takeover after a
// failure of the peer (it lights the failover LED and arms automatic failback).
func (e *Engine) becomePrimary(reason string, failure bool) {
	epoch := e.nextEpoch()
	e.epoch = epoch
	e.probeResult = nil
	e.probing = false
	// The epoch must be on disk before the address is claimed: in the
	// reserved record already (the current epoch follows in the
	// background, after the claim), or persisted now.
	later := false
	if e.onDisk < epoch {
		later = e.reserved >= epoch
		if !later {
			e.emit(PersistEpoch{Epoch: epoch})
		}
		e.onDisk = epoch
	}
	e.emit(ClaimAddress{})
	prev := e.role
	e.role, e.roleSince = RolePrimary, e.now
	e.sendHeartbeat(true, true)
	if later {
		e.emit(RecordEpoch{Epoch: epoch})
	}
	e.emit(
		SetMirrorRole{Primary: true, NewGeneration: true},
		RunHook{Name: "to-primary", Reason: reason},
		Log{Kind: "takeover", Message: fmt.Sprintf("primary with epoch %d: %s", epoch, reason)},
		RoleChanged{Role: RolePrimary, Prev: prev, Reason: reason})
	if failure {
		e.failoverLit = true
		e.failback = !e.cfg.Preferred
	}
	e.clear(AlarmAddressInUse)
}

// demote leaves the primary role: the address goes first.
func (e *Engine) demote(to Role, reason string) {
	if e.role != RolePrimary {
		panic(fmt.Sprintf("engine: demote from %s to %s", e.role, to))
	}
	e.handover = false
	e.stepDown = false
	e.failback = false
	e.emit(ReleaseAddress{})
	prev := e.role
	e.role, e.roleSince = to, e.now
	e.notPrimary = e.now
	e.emit(
		SetMirrorRole{Primary: false},
		RunHook{Name: "to-secondary", Reason: reason},
		Log{Kind: "demote", Message: reason},
		RoleChanged{Role: to, Prev: prev, Reason: reason})
	e.sendHeartbeat(true, true)
}

func (e *Engine) setRole(to Role, reason string) {
	if to == RolePrimary || e.role == RolePrimary {
		panic(fmt.Sprintf("engine: setRole from %s to %s", e.role, to))
	}
	prev := e.role
	e.role, e.roleSince = to, e.now
	if to == RoleSecondary {
		e.notPrimary = e.now
		e.emit(SetMirrorRole{Primary: false})
	}
	e.emit(
		Log{Kind: "role", Message: fmt.Sprintf("%s: %s", to, reason)},
		RoleChanged{Role: to, Prev: prev, Reason: reason})
	e.sendHeartbeat(true, true) // tell the peer at once
}

func (e *Engine) raise(a Alarm, reason string) {
	if _, ok := e.alarms[a]; ok {
		return
	}
	e.alarms[a] = false
	e.emit(
		AlarmRaised{Alarm: a, Reason: reason},
		Log{Kind: "alarm", Message: fmt.Sprintf("%s: %s", a, reason)},
		RunHook{Name: "alarm", Reason: string(a) + ": " + reason})
}

func (e *Engine) clear(a Alarm) {
	if _, ok := e.alarms[a]; !ok {
		return
	}
	delete(e.alarms, a)
	e.emit(AlarmCleared{Alarm: a}, Log{Kind: "alarm-cleared", Message: string(a)})
}

// heartbeats emits the heartbeats that fall due: often on LAN 2, less often
// on LAN 1. A LAN 1 heartbeat that would fall due before the next LAN 2 one
// goes out with this one, early (never late): both paths then cost one
// wake-up, not two (at 2 ms, a LAN 1 interval of 2.4 ms woke the daemon
// 917 times a second instead of 500).
func (e *Engine) heartbeats() {
	lan2 := e.now >= e.nextLAN2
	lan1 := e.now >= e.nextLAN1 || (lan2 && e.nextLAN1 < e.now+e.cfg.Interval)
	if lan2 || lan1 {
		e.sendHeartbeat(lan2, lan1)
	}
}

func (e *Engine) sendHeartbeat(lan2, lan1 bool) {
	if lan2 {
		e.nextLAN2 = e.now + e.cfg.Interval
	}
	if lan1 {
		e.nextLAN1 = e.now + e.cfg.LAN1Interval
	}
	e.emitSend(Send{Info: e.info(FrameHeartbeat), LAN2: lan2, LAN1: lan1})
}

// info is what a frame of the given kind sent now says about this node.
func (e *Engine) info(kind FrameKind) PeerInfo {
	return PeerInfo{
		Kind:       kind,
		NodeID:     e.cfg.NodeID,
		BootID:     e.cfg.BootID,
		Nonce:      e.cfg.Nonce,
		Echo:       e.echo,
		Mode:       e.cfg.Mode,
		Role:       e.role,
		Preferred:  e.cfg.Preferred,
		Handover:   e.handover,
		Eligible:   e.eligible(),
		Epoch:      e.epoch,
		Data:       e.data,
		Generation: e.generation,
		History:    e.history,
		Mirror:     e.mirror,
		Percent:    e.percent,
		Software:   e.cfg.Software,
	}
}

func upDown(up bool) string {
	if up {
		return "up"
	}
	return "down"
}
