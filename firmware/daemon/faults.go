package daemon

import (
	"errors"
	"time"

	"github.com/pairguard/pairguard/firmware/engine"
)

// The faults the daemon raises, and how each clears (README "Faults"):
//
//   - datastore-missing: the datastore cannot be opened or failed; it
//     clears when the datastore, which looks for the device every few
//     seconds, opens it again.
//   - state-dir-unwritable: the epoch could not be written and fsynced;
//     the daemon tries again every stateDirRetry and clears the fault once
//     the epoch the node holds is on disk.
//   - address-claim-failed: the service address could not be added; the
//     fault clears after a back-off (claimRetry, doubling up to
//     claimRetryMax, reset by a successful claim), and the node may then
//     take over and claim again.
const (
	faultDatastore    = "datastore-missing"
	faultStateDir     = "state-dir-unwritable"
	faultAddressClaim = "address-claim-failed"
)

const (
	stateDirRetry = 5 * time.Second
	claimRetry    = 10 * time.Second
	claimRetryMax = 5 * time.Minute
)

// faultRetry schedules the retries of the faults the daemon clears itself.
type faultRetry struct {
	next  map[string]time.Time // an active fault and when to try again
	claim time.Duration        // the address claim's current back-off
	// the periods (the constants above; tests shorten them)
	stateDir, claimMin, claimMax time.Duration
}

func (f *faultRetry) init() {
	f.next = map[string]time.Time{}
	f.stateDir, f.claimMin, f.claimMax = stateDirRetry, claimRetry, claimRetryMax
	f.claim = f.claimMin
}

// changed notes a fault raised or cleared.
func (f *faultRetry) changed(ev engine.FaultChanged, now time.Time) {
	if !ev.Active {
		delete(f.next, ev.Reason)
		return
	}
	if _, ok := f.next[ev.Reason]; ok {
		return
	}
	switch ev.Reason {
	case faultStateDir:
		f.next[ev.Reason] = now.Add(f.stateDir)
	case faultAddressClaim:
		f.next[ev.Reason] = now.Add(f.claim)
		f.claim = min(2*f.claim, f.claimMax)
	}
}

// claimed notes a successful address claim: the back-off starts over.
func (f *faultRetry) claimed() { f.claim = f.claimMin }

// due retries the faults whose time has come and returns the clearing
// events of those that are gone.
func (f *faultRetry) due(now time.Time, retry func(reason string) error) []engine.Event {
	var out []engine.Event
	for reason, at := range f.next {
		if now.Before(at) {
			continue
		}
		if err := retry(reason); err != nil {
			f.next[reason] = now.Add(f.stateDir)
			continue
		}
		out = append(out, engine.FaultChanged{Reason: reason, Active: false})
	}
	return out
}

// retryFault checks whether a fault's condition is gone.
func (d *Daemon) retryFault(reason string) error {
	switch reason {
	case faultStateDir:
		err := errors.Join(d.writeEpoch(d.eng.Status().Epoch), d.state.write("write-test", []byte("ok\n")))
		if err != nil {
			d.log.Warn("the state dir is still not writable", "err", err)
		}
		return err
	case faultAddressClaim:
		return nil // the next claim is the test
	}
	return errors.New("not retried by the daemon")
}
