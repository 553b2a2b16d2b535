package engine

import (
	"fmt"
	"time"
)

// Mode is the configured mode of a node.
type Mode uint8

const (
	modeInvalid     Mode = iota // invalid
	ModeIndependent             // independent
	ModeMain                    // main
	ModeSpare                   // spare
)

// ParseMode returns the mode for a config value.
func ParseMode(s string) (Mode, error) { return parseEnum(ModeSpare, s, "mode") }

// Role is the runtime role of a node.
type Role uint8

const (
	roleInvalid    Role = iota // invalid
	RoleStarting               // starting
	RolePrimary                // primary
	RoleSecondary              // secondary
	RoleFault                  // fault
	RoleStandalone             // standalone
)

// Valid reports whether r is one of the defined roles.
func (r Role) Valid() bool { return r > roleInvalid && r <= RoleStandalone }

// PeerState is what a node knows of its peer.
type PeerState uint8

const (
	peerInvalid PeerState = iota // invalid
	PeerUnknown                  // unknown
	PeerUp                       // up
	PeerDown                     // down
)

// DataState is the state of the local datastore, in DRBD's vocabulary.
type DataState uint8

const (
	dataInvalid      DataState = iota // invalid
	DataUpToDate                      // up-to-date
	DataOutdated                      // outdated
	DataInconsistent                  // inconsistent
)

// Valid reports whether d is one of the defined data states.
func (d DataState) Valid() bool { return d > dataInvalid && d <= DataInconsistent }

// MirrorState is the state of the datastore mirror.
type MirrorState uint8

const (
	mirrorInvalid    MirrorState = iota // invalid
	MirrorOff                           // off
	MirrorConnecting                    // connecting
	MirrorSyncing                       // syncing
	MirrorInSync                        // in-sync
	MirrorBehind                        // behind
	MirrorSplitBrain                    // split-brain
)

// Valid reports whether m is one of the defined mirror states.
func (m MirrorState) Valid() bool { return m > mirrorInvalid && m <= MirrorSplitBrain }

// Recovery says what happens when the preferred main returns.
type Recovery uint8

const (
	recoveryInvalid   Recovery = iota // invalid
	RecoveryAutomatic                 // automatic
	RecoveryManual                    // manual
)

// ParseRecovery returns the recovery mode for a config value.
func ParseRecovery(s string) (Recovery, error) { return parseEnum(RecoveryManual, s, "recovery") }

// LineLoss is the policy when the failover line is silent.
type LineLoss uint8

const (
	lineLossInvalid LineLoss = iota // invalid
	// LineLossProbe takes over only when LAN 1 is silent too and the ARP
	// probe finds the service address free (the default).
	LineLossProbe // probe
	// LineLossTakeover takes over as soon as the failover line is silent
	// (the Kentix behaviour).
	LineLossTakeover // takeover
)

// ParseLineLoss returns the policy for a config value.
func ParseLineLoss(s string) (LineLoss, error) { return parseEnum(LineLossTakeover, s, "on-line-loss") }

// Path is the link a frame travelled on.
type Path uint8

const (
	pathInvalid Path = iota // invalid
	// PathLAN2 is the failover line.
	PathLAN2 // lan2
	// PathLAN1 is the site network, the second path.
	PathLAN1 // lan1
)

// Alarm names a condition an operator must see.
type Alarm string

// The alarms. Their names appear in `status --json` and in hook environments.
const (
	AlarmFailoverLineDown Alarm = "failover-line-down"
	AlarmAddressInUse     Alarm = "address-in-use"
	AlarmWitnessLost      Alarm = "witness-unreachable"
	AlarmIncompatiblePeer Alarm = "incompatible-peer"
	AlarmVersionMismatch  Alarm = "version-mismatch"
	AlarmNoUpToDateData   Alarm = "no-up-to-date-data"
	AlarmSplitBrain       Alarm = "split-brain"
	AlarmCheckFailed      Alarm = "check-failed"
	AlarmHookFailed       Alarm = "hook-failed"
	AlarmDuplicateNodeID  Alarm = "duplicate-node-id"
)

// parseEnum returns the value from 1 to last whose name (from stringer)
// is s; the invalid zero value is never a config value.
func parseEnum[T interface {
	~uint8
	fmt.Stringer
}](last T, s, key string) (T, error) {
	for v := T(1); v <= last; v++ {
		if v.String() == s {
			return v, nil
		}
	}
	return 0, fmt.Errorf("%s: unknown value %q", key, s)
}

// Durations are the engine's timers. Config.validate checks their relations.
type Durations struct {
	Interval       time.Duration // heartbeat interval on LAN 2
	LAN1Interval   time.Duration // heartbeat interval on LAN 1 (the second path)
	FailoverTime   time.Duration // silence on LAN 2 before the peer is down
	ConnectionWait time.Duration // how long starting waits for the peer
	ProbeTimeout   time.Duration // how long an ARP probe may take before it counts as free
}
