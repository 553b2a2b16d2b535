package engine

import "time"

// FrameKind is the kind of a failover-line frame as the engine sees it.
type FrameKind uint8

const (
	frameInvalid   FrameKind = iota // invalid
	FrameHeartbeat                  // heartbeat
	FrameRelease                    // release
)

// PeerInfo is what a frame says about the node that sent it: the engine
// fills one in every Send, and takes one in every FrameReceived. The daemon
// maps it to and from the wire frame in one place; the transport's fields
// (pair id, sequence number, path flag) are the daemon's.
type PeerInfo struct {
	Kind   FrameKind
	NodeID uint64
	// BootID is the sender's boot counter, Nonce its random value of this
	// start, Echo the nonce of the last frame it accepted from its peer.
	// A frame moves a node only if it echoes that node's own nonce.
	BootID     uint64
	Nonce      uint64
	Echo       uint64
	Mode       Mode
	Role       Role
	Preferred  bool
	Handover   bool // the sender is handing over its primary role
	Eligible   bool // the sender could become primary (data, witness, no fault)
	Epoch      uint64
	Data       DataState
	Generation uint64
	History    uint64
	Mirror     MirrorState
	Percent    uint8
	Software   string
	Seq        uint64 // set by the daemon on receipt; the engine does not send it
}

// Event is an input to the engine. The daemon turns what it sees into events.
type Event interface{ isEvent() }

// FrameReceived: an authenticated frame that passed the replay window
// arrived on Path. The engine decides whether it is the peer's, fresh, a
// reflection of this node's own frames or a node with the same id.
type FrameReceived struct {
	Path Path
	Peer PeerInfo
}

// PeerIncompatible: an authenticated frame of another protocol version arrived.
type PeerIncompatible struct {
	Path    Path
	Version uint8
}

// LinkChanged: the carrier of a link went up or down.
type LinkChanged struct {
	Path Path
	Up   bool
}

// ProbeDone: the ARP probe of the service address asked for by StartProbe finished.
type ProbeDone struct {
	InUse bool
}

// WitnessChanged: the witness answered (or stopped answering) ARP.
type WitnessChanged struct {
	Reachable bool
}

// DataChanged: the datastore's state or generation changed.
type DataChanged struct {
	State      DataState
	Generation uint64
	History    uint64
}

// MirrorChanged: the mirror's state or progress changed.
type MirrorChanged struct {
	State   MirrorState
	Percent uint8
}

// FaultChanged: a condition that keeps the node from serving appeared or went away.
// Reason names it ("datastore-missing", "lan2-missing", ...).
type FaultChanged struct {
	Reason string
	Active bool
}

// CheckChanged: a health check crossed its fall or rise count.
type CheckChanged struct {
	Name    string
	Healthy bool
}

// Command is an operator's command.
type Command uint8

const (
	commandInvalid Command = iota // invalid
	// CmdSwap: planned handover to the peer.
	CmdSwap // swap
	// CmdForceTakeover: become primary whatever the guards say.
	CmdForceTakeover // takeover-force
	// CmdAcknowledge: acknowledge alarms and the failover LED.
	CmdAcknowledge // acknowledge
	// CmdShutdown: the daemon stops; hand over if the peer can take, else release.
	CmdShutdown // shutdown
)

// CommandIssued: an operator gave a command (control socket, console or button).
type CommandIssued struct {
	Cmd Command
}

// HookDone: a hook the engine waits for (Wait set in RunHook) has finished.
type HookDone struct {
	Name string
	Err  error
}

// EpochReserved: the epoch asked for by ReserveEpoch is in the reserved
// record on stable storage (or could not be written: Err).
type EpochReserved struct {
	Epoch uint64
	Err   error
}

// FlushDone: the mirror has sent its last data to the peer (FlushMirror).
type FlushDone struct {
	Err error
}

func (FrameReceived) isEvent()    {}
func (PeerIncompatible) isEvent() {}
func (LinkChanged) isEvent()      {}
func (ProbeDone) isEvent()        {}
func (WitnessChanged) isEvent()   {}
func (DataChanged) isEvent()      {}
func (MirrorChanged) isEvent()    {}
func (FaultChanged) isEvent()     {}
func (CheckChanged) isEvent()     {}
func (CommandIssued) isEvent()    {}
func (HookDone) isEvent()         {}
func (FlushDone) isEvent()        {}
func (EpochReserved) isEvent()    {}

// Action is an output of the engine. The daemon carries actions out in the
// order they are returned; see the package documentation.
type Action interface{ isAction() }

// PersistEpoch: write the epoch to stable storage and fsync it before the next action.
type PersistEpoch struct{ Epoch uint64 }

// ReserveEpoch: write the epoch the next claim would take to the reserved
// record (not the current epoch: that one stays as it is on disk and in
// status) in the background and report EpochReserved. A secondary that
// knows its peer keeps it there, so that a takeover's fsync is done long
// before the takeover; a reserved epoch higher than the one in use is
// harmless.
type ReserveEpoch struct{ Epoch uint64 }

// RecordEpoch: write the epoch, claimed under the cover of the reserved
// record, as the current epoch, in the background: nothing waits for it.
// A failure is the state dir's fault like a failed PersistEpoch.
type RecordEpoch struct{ Epoch uint64 }

// ClaimAddress: add the service address to LAN 1 and announce it (gratuitous ARP).
type ClaimAddress struct{}

// ReleaseAddress: remove the service address and stop announcing it.
type ReleaseAddress struct{}

// Send: send Info as a frame on the given paths (a RELEASE three times).
type Send struct {
	Info PeerInfo
	LAN2 bool
	LAN1 bool
}

// DropReason says why the engine ignored a received frame.
type DropReason uint8

const (
	dropInvalid DropReason = iota // invalid
	// DropStale: the frame does not echo this node's nonce: it may have
	// been recorded before this node started.
	DropStale // stale
	// DropReflected: this node's own frame came back to it.
	DropReflected // reflected
)

// FrameDropped: the frame of the FrameReceived being stepped moved nothing;
// the daemon counts it.
type FrameDropped struct{ Reason DropReason }

// StartProbe: ARP-probe the service address (RFC 5227) and report ProbeDone.
type StartProbe struct{}

// RunHook: run the named hook (to-primary, to-secondary, fault, alarm). With
// Wait the engine expects HookDone.
type RunHook struct {
	Name   string
	Reason string
	Wait   bool
}

// SetMirrorRole: the mirror's direction. Primary makes this node the source
// and starts a new data generation when NewGeneration is set.
type SetMirrorRole struct {
	Primary       bool
	NewGeneration bool
}

// FlushMirror: send the last mirror data to the peer, then report FlushDone.
type FlushMirror struct{}

// Log: an entry for the persistent logbook, with the role and epoch of
// the moment it describes.
type Log struct {
	Kind    string
	Message string
	Role    Role
	Epoch   uint64
}

// AlarmRaised and AlarmCleared report alarm changes (also logged).
type AlarmRaised struct {
	Alarm  Alarm
	Reason string
}

// AlarmCleared reports that an alarm's condition went away.
type AlarmCleared struct{ Alarm Alarm }

// RoleChanged reports a change of role, after the actions that made it safe.
type RoleChanged struct {
	Role, Prev Role
	Reason     string
}

func (PersistEpoch) isAction()   {}
func (ClaimAddress) isAction()   {}
func (ReserveEpoch) isAction()   {}
func (RecordEpoch) isAction()    {}
func (ReleaseAddress) isAction() {}
func (Send) isAction()           {}
func (FrameDropped) isAction()   {}
func (StartProbe) isAction()     {}
func (RunHook) isAction()        {}
func (SetMirrorRole) isAction()  {}
func (FlushMirror) isAction()    {}
func (Log) isAction()            {}
func (AlarmRaised) isAction()    {}
func (AlarmCleared) isAction()   {}
func (RoleChanged) isAction()    {}

// Status is a snapshot of the engine's state, for frames, `status` and the LEDs.
type Status struct {
	Mode        Mode
	Role        Role
	Since       time.Duration // when the current role began
	Epoch       uint64
	NodeID      uint64
	Preferred   bool
	Eligible    bool
	Handover    bool
	Peer        PeerStatus
	Data        DataState
	Generation  uint64
	History     uint64
	Mirror      MirrorState
	Percent     uint8
	Alarms      []Alarm // sorted
	Unacked     bool    // some alarm is not acknowledged yet
	FailoverLit bool    // a takeover happened and was not acknowledged
	Faults      []string
	LAN1Up      bool
	LAN2Up      bool
	Witness     bool // the witness answers (true when none is configured)
	Software    string
	Arbiter     ArbiterStatus
}

// PeerStatus is the part of Status about the peer.
type PeerStatus struct {
	State    PeerState
	Missed   int
	Seq      uint64
	NodeID   uint64
	Role     Role
	Epoch    uint64
	Data     DataState
	Mirror   MirrorState
	Software string
	LAN1     bool // heard on LAN 1 within failover-time
	LAN2     bool // heard on LAN 2 within failover-time
}
