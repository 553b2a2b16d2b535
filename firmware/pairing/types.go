package pairing

import "time"

// Role is a node's part in pairing: the main opens the window, the spare joins.
type Role uint8

const (
	roleInvalid Role = iota // invalid
	RoleMain                // main
	RoleSpare               // spare
)

func (r Role) valid() bool { return r == RoleMain || r == RoleSpare }

// State is the pairing state. `status` shows unpaired for StateWindow and
// StateJoining as well (the node has no peer yet); the daemon maps it.
type State uint8

const (
	stateInvalid State = iota // invalid
	// StateUnpaired: no peer, no window, nothing in flight.
	StateUnpaired // unpaired
	// StateWindow: the main's pairing window is open (a code is valid).
	StateWindow // window
	// StateJoining: the spare looks for the main and runs the exchange.
	StateJoining // joining
	// StatePending: the exchange confirmed; both operators must accept.
	StatePending // pending
	// StatePaired: both accepted; the record is persisted.
	StatePaired // paired
)

// Event is an input to the Machine.
type Event interface{ isEvent() }

// Begin: `pairguard pair begin` on the main: open a window and draw a code.
type Begin struct{}

// Join: `pairguard pair join NNNN-NNNN` on the spare.
type Join struct{ Code Code }

// Received: a pairing message arrived on the failover line.
type Received struct{ Msg Message }

// Accept: `pairguard pair accept`, or the button pressed during the window.
type Accept struct{}

// Reject: the operator refuses the peer shown in pending.
type Reject struct{}

// Cancel: close the window or abandon the join (the code is burned).
type Cancel struct{}

// Unpair: `pairguard unpair`: forget the peer.
type Unpair struct{}

// PersistFailed: the daemon could not carry out Persist.
type PersistFailed struct{ Err error }

func (Begin) isEvent()         {}
func (Join) isEvent()          {}
func (Received) isEvent()      {}
func (Accept) isEvent()        {}
func (Reject) isEvent()        {}
func (Cancel) isEvent()        {}
func (Unpair) isEvent()        {}
func (PersistFailed) isEvent() {}

// Action is an output of the Machine, carried out by the daemon in order.
type Action interface{ isAction() }

// Send: send Msg in a PAIR-HELLO frame to node To, or broadcast when To is 0.
type Send struct {
	To  uint64
	Msg Message
}

// Persist: write Record durably (write, fsync, rename) before the next
// action; report a failure with PersistFailed.
type Persist struct{ Record Record }

// Forget: delete the persisted record (durably) before the next action.
type Forget struct{}

// StateChanged: the pairing state changed, after the actions that made it true.
type StateChanged struct {
	State, Prev State
	Reason      string
}

// Log: an entry for the logbook.
type Log struct {
	Kind    string
	Message string
}

func (Send) isAction()         {}
func (Persist) isAction()      {}
func (Forget) isAction()       {}
func (StateChanged) isAction() {}
func (Log) isAction()          {}

// Status is a snapshot for `status`, the console and the LEDs.
type Status struct {
	State  State
	Since  time.Duration
	Reason string // why the machine last returned to unpaired
	// Code is the one-time code while the main's window is open.
	Code Code
	// Expires is when the window (main) or the join (spare) ends.
	Expires time.Duration
	// Peer, Check and the acceptances are set in pending; Peer also when paired.
	Peer          *Peer
	Check         string
	LocalAccepted bool
	PeerAccepted  bool
	// Settings: on the spare, the main's settings it adopts (pending) or
	// adopted (paired); on the main, its own.
	Settings *Settings
}
