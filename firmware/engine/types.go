package engine

import (
	"fmt"
	"time"
)

// Mode is the configured mode of a node.
type Mode uint8

const (
	modeInvalid Mode = iota
	ModeIndependent
	ModeMain
	ModeSpare
)

var modeNames = [...]string{"invalid", "independent", "main", "spare"}

func (m Mode) String() string { return enumName(modeNames[:], uint8(m)) }

// ParseMode returns the mode for a config value.
func ParseMode(s string) (Mode, error) { return parseEnum[Mode](modeNames[:], s, "mode") }

// Role is the runtime role of a node.
type Role uint8

const (
	roleInvalid Role = iota
	RoleStarting
	RolePrimary
	RoleSecondary
	RoleFault
	RoleStandalone
)

var roleNames = [...]string{"invalid", "starting", "primary", "secondary", "fault", "standalone"}

func (r Role) String() string { return enumName(roleNames[:], uint8(r)) }

// Valid reports whether r is one of the defined roles.
func (r Role) Valid() bool { return r > roleInvalid && r <= RoleStandalone }

// PeerState is what a node knows of its peer.
type PeerState uint8

const (
	peerInvalid PeerState = iota
	PeerUnknown
	PeerUp
	PeerDown
)

var peerNames = [...]string{"invalid", "unknown", "up", "down"}

func (p PeerState) String() string { return enumName(peerNames[:], uint8(p)) }

// DataState is the state of the local datastore, in DRBD's vocabulary.
type DataState uint8

const (
	dataInvalid DataState = iota
	DataUpToDate
	DataOutdated
	DataInconsistent
)

var dataNames = [...]string{"invalid", "up-to-date", "outdated", "inconsistent"}

func (d DataState) String() string { return enumName(dataNames[:], uint8(d)) }

// Valid reports whether d is one of the defined data states.
func (d DataState) Valid() bool { return d > dataInvalid && d <= DataInconsistent }

// MirrorState is the state of the datastore mirror.
type MirrorState uint8

const (
	mirrorInvalid MirrorState = iota
	MirrorOff
	MirrorConnecting
	MirrorSyncing
	MirrorInSync
	MirrorBehind
	MirrorSplitBrain
)

var mirrorNames = [...]string{"invalid", "off", "connecting", "syncing", "in-sync", "behind", "split-brain"}

func (m MirrorState) String() string { return enumName(mirrorNames[:], uint8(m)) }

// Valid reports whether m is one of the defined mirror states.
func (m MirrorState) Valid() bool { return m > mirrorInvalid && m <= MirrorSplitBrain }

// Recovery says what happens when the preferred main returns.
type Recovery uint8

const (
	recoveryInvalid Recovery = iota
	RecoveryAutomatic
	RecoveryManual
)

var recoveryNames = [...]string{"invalid", "automatic", "manual"}

func (r Recovery) String() string { return enumName(recoveryNames[:], uint8(r)) }

// ParseRecovery returns the recovery mode for a config value.
func ParseRecovery(s string) (Recovery, error) {
	return parseEnum[Recovery](recoveryNames[:], s, "recovery")
}

// LineLoss is the policy when the failover line is silent.
type LineLoss uint8

const (
	lineLossInvalid LineLoss = iota
	// LineLossProbe takes over only when LAN 1 is silent too and the ARP
	// probe finds the service address free (the default).
	LineLossProbe
	// LineLossTakeover takes over as soon as the failover line is silent
	// (the Kentix behaviour).
	LineLossTakeover
)

var lineLossNames = [...]string{"invalid", "probe", "takeover"}

func (l LineLoss) String() string { return enumName(lineLossNames[:], uint8(l)) }

// ParseLineLoss returns the policy for a config value.
func ParseLineLoss(s string) (LineLoss, error) {
	return parseEnum[LineLoss](lineLossNames[:], s, "on-line-loss")
}

// Path is the link a frame travelled on.
type Path uint8

const (
	pathInvalid Path = iota
	PathLAN2         // the failover line
	PathLAN1         // the site network, the second path
)

var pathNames = [...]string{"invalid", "lan2", "lan1"}

func (p Path) String() string { return enumName(pathNames[:], uint8(p)) }

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

func enumName(names []string, v uint8) string {
	if int(v) < len(names) {
		return names[v]
	}
	return fmt.Sprintf("invalid(%d)", v)
}

func parseEnum[T ~uint8](names []string, s, key string) (T, error) {
	for i, n := range names {
		if i > 0 && n == s {
			return T(i), nil
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
