package daemon

import (
	"context"
	"errors"

	"github.com/pairguard/pairguard/firmware/engine"
)

// Mirror is the datastore mirror as the daemon drives it. The sdcard
// package implements it; noMirror stands in when no [datastore] is configured.
type Mirror interface {
	// Open opens the datastore before the engine starts and returns its
	// state (nil: no datastore); an error is reported as a fault.
	Open() (*engine.DataChanged, error)
	// Start runs the mirror in the background; it reports DataChanged and
	// MirrorChanged events on events.
	Start(ctx context.Context, events chan<- engine.Event)
	// SetPrimary makes this node the source (true) or the target.
	SetPrimary(primary, newGeneration bool)
	// Flush sends the last data to the peer before a planned handover.
	Flush(ctx context.Context) error
	// Sync starts a resync round now.
	Sync() error
	// Verify compares both sides and returns a report.
	Verify(ctx context.Context) (string, error)
	// Resolve ends a split brain, keeping this node's data or the peer's.
	Resolve(ctx context.Context, keepLocal bool) error
	// Status returns a report for `status`.
	Status() MirrorStatus
	// Stop stops the mirror.
	Stop()
}

// MirrorStatus is the mirror's part of `status --json`.
type MirrorStatus struct {
	State      string  `json:"state"`
	Percent    float64 `json:"percent"`
	Rate       int64   `json:"rate,omitempty"` // bytes per second
	ETA        string  `json:"eta,omitempty"`
	Device     string  `json:"device,omitempty"`
	Generation string  `json:"generation,omitempty"`
	Behind     uint64  `json:"behind,omitempty"` // blocks not yet on the peer
	Direction  string  `json:"direction,omitempty"`
}

var errNoDatastore = errors.New("no [datastore] is configured")

type noMirror struct{}

func (noMirror) Open() (*engine.DataChanged, error)         { return nil, nil }
func (noMirror) Start(context.Context, chan<- engine.Event) {}
func (noMirror) Resolve(context.Context, bool) error        { return errNoDatastore }
func (noMirror) SetPrimary(bool, bool)                      {}
func (noMirror) Flush(context.Context) error                { return nil }
func (noMirror) Sync() error                                { return errNoDatastore }
func (noMirror) Verify(context.Context) (string, error)     { return "", errNoDatastore }
func (noMirror) Status() MirrorStatus                       { return MirrorStatus{State: "off"} }
func (noMirror) Stop()                                      {}
