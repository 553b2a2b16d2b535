package daemon

import (
	"testing"

	"github.com/pairguard/pairguard/firmware/engine"
	"github.com/pairguard/pairguard/sdcard"
)

// The mirror speaks its own states; the daemon maps every one by name.
func TestMirrorStatesMapByName(t *testing.T) {
	for d := sdcard.DataState(1); d.Valid(); d++ {
		if got := dataState(d); got.String() != d.String() {
			t.Errorf("data %v maps to %v", d, got)
		}
	}
	if dataState(0) != engine.DataInconsistent {
		t.Error("an invalid data state must never be eligible")
	}
	for m := sdcard.MirrorOff; m <= sdcard.MirrorSplitBrain; m++ {
		if got := mirrorState(m); got.String() != m.String() {
			t.Errorf("mirror %v maps to %v", m, got)
		}
	}
}
