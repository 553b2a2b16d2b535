package sdcard

import "fmt"

// DataState is what a node's datastore holds, in DRBD's vocabulary. The
// values are persisted in the metadata: never renumber them.
type DataState uint8

const (
	dataInvalid DataState = iota
	// DataUpToDate: the latest data of its generation; may become primary.
	DataUpToDate
	// DataOutdated: consistent, but the peer holds newer data.
	DataOutdated
	// DataInconsistent: possibly a mix (a sync never completed, a round
	// written in place, a journal not yet applied); never primary.
	DataInconsistent
)

var dataNames = [...]string{"invalid", "up-to-date", "outdated", "inconsistent"}

func (d DataState) String() string {
	if int(d) < len(dataNames) {
		return dataNames[d]
	}
	return fmt.Sprintf("invalid(%d)", uint8(d))
}

// Valid reports whether d is one of the defined data states.
func (d DataState) Valid() bool { return d > dataInvalid && d <= DataInconsistent }

// MirrorState is the state of the mirror as `status` shows it.
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

func (m MirrorState) String() string {
	if int(m) < len(mirrorNames) {
		return mirrorNames[m]
	}
	return fmt.Sprintf("invalid(%d)", uint8(m))
}
