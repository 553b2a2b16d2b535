package daemon

import (
	"context"
	"fmt"

	"github.com/pairguard/pairguard/firmware/arbiter"
	"github.com/pairguard/pairguard/firmware/engine"
)

// The node's side of the arbiter (README, "The arbiter"): with `[arbiter]
// address`, the daemon runs the lease client of firmware/arbiter as one of
// its goroutines. The client's events enter the loop's inbox as
// engine.LeaseChanged, in the order they happened; the engine's WantLease
// starts and stops the asking; after every batch of actions the client
// learns the node's role and data state for its next requests. Lease ends
// are measured on d.mono, the engine's clock.

// openArbiter opens the lease client's socket when an arbiter is
// configured. A failure is fatal: a node configured with an arbiter must
// not run as if it had none.
func (d *Daemon) openArbiter() error {
	if d.cfg.Arbiter.Address == "" || !d.cfg.Engine.Arbiter.Enabled {
		return nil
	}
	mode := arbiter.ModeMain
	if d.cfg.Engine.Mode == engine.ModeSpare {
		mode = arbiter.ModeSpare
	}
	conn, err := arbiter.Dial(d.cfg.Arbiter.Address, arbiter.ClientConfig{
		Key:   arbiter.NewKey(arbiter.DeriveKey(d.cfg.Key)),
		Node:  d.nodeID,
		Mode:  mode,
		Lease: d.cfg.ArbiterLease(),
	}, d.mono)
	if err != nil {
		return fmt.Errorf("arbiter.address: %w", err)
	}
	d.arb = conn
	return nil
}

// goArbiter runs the lease client until ctx ends and forwards its events
// to the inbox. Both goroutines belong to d.wg.
func (d *Daemon) goArbiter(ctx context.Context) {
	if d.arb == nil {
		return
	}
	events := make(chan arbiter.Event, 16)
	d.wg.Go(func() {
		if err := d.arb.Run(ctx, events); err != nil {
			d.log.Error("arbiter lease client stopped", "err", err)
		}
		close(events) // Run has returned: nothing sends any more
	})
	d.wg.Go(func() {
		for ev := range events {
			d.queue(leaseChanged(ev))
		}
	})
}

// leaseChanged maps a lease client's event to the engine's.
func leaseChanged(ev arbiter.Event) engine.LeaseChanged {
	lc := engine.LeaseChanged{Until: ev.Until, Holder: ev.Holder, Epoch: ev.Epoch}
	switch ev.Kind {
	case arbiter.EventGranted:
		lc.State = engine.LeaseGranted
	case arbiter.EventDenied:
		lc.State = engine.LeaseDenied
		lc.Reason = ev.Reason.String()
		lc.HolderFor = ev.RetryAfter
	case arbiter.EventUnreachable:
		lc.State = engine.LeaseUnreachable
	default:
		panic(fmt.Sprintf("daemon: lease event %s", ev.Kind))
	}
	return lc
}

// wantLease carries out engine.WantLease.
func (d *Daemon) wantLease(want bool) {
	if d.arb == nil {
		return
	}
	d.arb.Want(want)
}

// leaseInfo tells the lease client what its next requests say about the
// node: its role, data state and generations.
func (d *Daemon) leaseInfo() {
	if d.arb == nil {
		return
	}
	d.arb.SetInfo(arbiterInfo(d.eng.Status()))
}

func arbiterInfo(st engine.Status) arbiter.Info {
	info := arbiter.Info{Epoch: st.Epoch, Generation: st.Generation, History: st.History,
		PeerHeard: st.Peer.State == engine.PeerUp}
	switch st.Role {
	case engine.RolePrimary:
		info.Role = arbiter.RolePrimary
	case engine.RoleSecondary:
		info.Role = arbiter.RoleSecondary
	case engine.RoleFault:
		info.Role = arbiter.RoleFault
	default:
		info.Role = arbiter.RoleStarting
	}
	switch st.Data {
	case engine.DataUpToDate:
		info.Data = arbiter.DataUpToDate
	case engine.DataOutdated:
		info.Data = arbiter.DataOutdated
	default:
		info.Data = arbiter.DataInconsistent
	}
	return info
}

// ArbiterReport is `status` `arbiter` on a node with an arbiter.
type ArbiterReport struct {
	// State: off, idle (no lease wanted: the peer is heard and this node
	// is not primary), asking, granted, expired, denied or unreachable.
	State   string `json:"state"`
	Holder  string `json:"holder"`   // the holder the arbiter last named, 16 hex digits ("" for none)
	LeaseMS int64  `json:"lease-ms"` // what is left of this node's lease
}

// arbiterReport is Report.Arbiter: nil without an arbiter.
func (d *Daemon) arbiterReport(st engine.Status) *ArbiterReport {
	if d.arb == nil {
		return nil
	}
	r := &ArbiterReport{State: st.Arbiter.State, LeaseMS: st.Arbiter.LeaseMS}
	if st.Arbiter.Holder != 0 {
		r.Holder = fmt.Sprintf("%016x", st.Arbiter.Holder)
	}
	return r
}

// text is the report's line.
func (a *ArbiterReport) text(self string) string {
	s := a.State
	switch {
	case a.Holder == "":
	case a.Holder == self:
		s += ", holder this node"
	default:
		s += ", holder " + a.Holder
	}
	if a.LeaseMS > 0 {
		s += fmt.Sprintf(", lease %d ms", a.LeaseMS)
	}
	return s
}
