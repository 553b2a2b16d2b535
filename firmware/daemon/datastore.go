package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pairguard/pairguard/firmware/config"
	"github.com/pairguard/pairguard/firmware/engine"
	"github.com/pairguard/pairguard/firmware/logbook"
	"github.com/pairguard/pairguard/sdcard"
)

// datastore drives the sdcard mirror for the daemon. A missing, read-only
// or too small device is a fault (alarm, role fault), never a crash: the
// datastore retries opening the device every few seconds.
type datastore struct {
	cfg  sdcard.MirrorConfig
	log  *slog.Logger
	book *logbook.Book
	// epoch returns the epoch to record with a new generation.
	epoch func() uint64
	// bootstrap: this node is the main, so a datastore that has never had
	// a generation becomes the pair's first one.
	bootstrap bool

	mu      sync.Mutex
	m       *sdcard.Mirror
	primary bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// retryOpen is how often a missing datastore is looked for again.
const retryOpen = 3 * time.Second

// probeDevice is how often a running datastore's device is read to find a
// card that failed or came back.
const probeDevice = time.Second

// newDatastore prepares the mirror from the config; the device is opened
// by Start. id is the node's mirror identity (it may change while the
// mirror runs: a teach-in).
func newDatastore(c *config.Config, log *slog.Logger, book *logbook.Book, epoch func() uint64, id *sdcard.TLSIdentity) (*datastore, error) {
	d := c.Datastore
	mode, err := sdcard.ParseMode(d.Mode)
	if err != nil {
		return nil, err
	}
	bw, _ := config.ParseBandwidth(d.Bandwidth)
	sb := sdcard.SplitBrainDiscardZeroChanges
	if d.SplitBrain != "" {
		if sb, err = sdcard.ParseSplitBrainPolicy(d.SplitBrain); err != nil {
			return nil, err
		}
	}
	comp := sdcard.CompressionOff
	if d.Compression != "" {
		if comp, err = sdcard.ParseCompression(d.Compression); err != nil {
			return nil, err
		}
	}
	mc := sdcard.MirrorConfig{
		Device:         d.Device,
		BlockSize:      d.BlockSize,
		StateDir:       c.StateDir,
		PairKey:        c.Key,
		TLS:            id,
		Mode:           mode,
		Interval:       d.Interval.Duration,
		BandwidthLimit: bw,
		FreezeMount:    d.Freeze,
		SplitBrain:     sb,
		Compression:    comp,
	}
	if c.LAN2.Prefix.IsValid() {
		mc.ListenAddr = net.JoinHostPort(c.LAN2.Prefix.Addr().String(), strconv.Itoa(d.Port))
	}
	if c.LAN2.Peer.IsValid() {
		mc.PeerAddr = net.JoinHostPort(c.LAN2.Peer.String(), strconv.Itoa(d.Port))
	}
	return &datastore{cfg: mc, log: log, book: book, epoch: epoch, bootstrap: c.Engine.Mode == engine.ModeMain}, nil
}

func (s *datastore) note(kind, msg string) {
	if err := s.book.Add(logbook.Entry{Kind: kind, Message: msg}); err != nil {
		s.log.Warn("logbook write failed", "err", err)
	}
	s.log.Info(msg, "kind", kind)
}

// Open opens the device and returns the datastore's state, before the
// engine starts; an error is a fault the caller reports.
func (s *datastore) Open() (*engine.DataChanged, error) {
	m, err := sdcard.NewMirror(s.cfg, s.log)
	if err != nil {
		s.note("datastore", fmt.Sprintf("datastore %s unusable: %v", s.cfg.Device, err))
		return nil, err
	}
	if st := m.Status(); st.Generation == 0 && s.bootstrap {
		// A fresh pair: the main's datastore is the data the pair starts
		// with (the spare's is inconsistent until the first sync). A main
		// whose card was replaced while the spare ran on shows up as a
		// split brain, resolved by the operator; nothing is lost silently.
		g, err := m.NewGeneration(s.epoch())
		if err != nil {
			return nil, errors.Join(err, m.Close())
		}
		s.note("datastore", fmt.Sprintf("first generation %v of a fresh pair from %s", g, s.cfg.Device))
	}
	s.mu.Lock()
	s.m = m
	s.mu.Unlock()
	ev := dataEvent(m.Status())
	return &ev, nil
}

// Start runs the mirror; a device that Open could not open is looked for
// again every few seconds.
func (s *datastore) Start(ctx context.Context, events chan<- engine.Event) {
	ctx, s.cancel = context.WithCancel(ctx)
	send := func(ev engine.Event) {
		select {
		case events <- ev:
		case <-ctx.Done():
		}
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		m := s.mirror()
		for m == nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(retryOpen):
			}
			var err error
			if m, err = sdcard.NewMirror(s.cfg, s.log); err != nil {
				m = nil
				continue
			}
			s.mu.Lock()
			s.m = m
			s.mu.Unlock()
			s.note("datastore", "datastore "+s.cfg.Device+" is back")
			send(dataEvent(m.Status()))
			send(engine.FaultChanged{Reason: "datastore-missing", Active: false})
		}
		s.mu.Lock()
		m.SetPrimary(s.primary)
		s.mu.Unlock()
		s.wg.Add(2)
		go func() {
			defer s.wg.Done()
			if err := m.Run(ctx); err != nil && ctx.Err() == nil {
				s.log.Error("mirror stopped", "err", err)
			}
		}()
		go func() {
			defer s.wg.Done()
			s.watch(ctx, m, send)
		}()
	}()
}

func dataEvent(st sdcard.Status) engine.DataChanged {
	var hist uint64
	if len(st.History) > 0 {
		hist = st.History[0]
	}
	return engine.DataChanged{State: dataState(st.Data), Generation: st.Generation, History: hist}
}

// dataState maps the mirror's data state to the engine's.
func dataState(d sdcard.DataState) engine.DataState {
	switch d {
	case sdcard.DataUpToDate:
		return engine.DataUpToDate
	case sdcard.DataOutdated:
		return engine.DataOutdated
	}
	return engine.DataInconsistent // also an invalid state: never eligible
}

// mirrorState maps the mirror's state to the engine's.
func mirrorState(m sdcard.MirrorState) engine.MirrorState {
	switch m {
	case sdcard.MirrorConnecting:
		return engine.MirrorConnecting
	case sdcard.MirrorSyncing:
		return engine.MirrorSyncing
	case sdcard.MirrorInSync:
		return engine.MirrorInSync
	case sdcard.MirrorBehind:
		return engine.MirrorBehind
	case sdcard.MirrorSplitBrain:
		return engine.MirrorSplitBrain
	}
	return engine.MirrorOff
}

// watch turns the mirror's status and events into engine events and
// logbook entries.
func (s *datastore) watch(ctx context.Context, m *sdcard.Mirror, send func(engine.Event)) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	probe := time.NewTicker(probeDevice)
	defer probe.Stop()
	var last sdcard.Status
	first := true
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-m.Events():
			s.logEvent(ev)
		case <-probe.C:
			m.CheckDevice() // a failure shows in the status below
		case <-t.C:
		}
		st := m.Status()
		if failed := st.DeviceErr != nil; failed != (last.DeviceErr != nil) || (first && failed) {
			// A card that fails while running is the same fault as a
			// missing one: a primary hands over, a secondary is not eligible.
			send(engine.FaultChanged{Reason: "datastore-missing", Active: failed})
		}
		if first || st.Data != last.Data || st.Generation != last.Generation {
			send(dataEvent(st))
		}
		pct := uint8(st.Percent)
		if first || st.State != last.State || pct != uint8(last.Percent) {
			send(engine.MirrorChanged{State: mirrorState(st.State), Percent: pct})
		}
		first, last = false, st
	}
}

func (s *datastore) logEvent(ev sdcard.Event) {
	switch ev.Kind {
	case sdcard.EventRoundDone:
		s.note("sync", ev.Round.String())
	case sdcard.EventRoundFailed:
		s.note("sync-failed", fmt.Sprintf("round failed: %v", ev.Err))
	case sdcard.EventSplitBrain:
		s.note("split-brain", fmt.Sprintf("split brain: local %v, peer %v; resolve with `pairguard resolve`", ev.Local, ev.Remote))
	case sdcard.EventPeerRejected:
		// One entry per source and minute at most: the logbook aggregates
		// a flood of failed handshakes by Source.
		msg := "mirror connection from " + ev.Text + " rejected"
		if ev.Err != nil {
			msg += ": " + ev.Err.Error()
		}
		if err := s.book.Add(logbook.Entry{Kind: "mirror", Source: ev.Text, Message: msg}); err != nil {
			s.log.Warn("logbook write failed", "err", err)
		}
	case sdcard.EventSplitBrainResolved, sdcard.EventInconsistent, sdcard.EventOutdated,
		sdcard.EventIncompatible:
		msg := ev.Kind.String()
		if ev.Text != "" {
			msg += ": " + ev.Text
		}
		if ev.Err != nil {
			msg += ": " + ev.Err.Error()
		}
		s.note("mirror", msg)
	case sdcard.EventDeviceFailed:
		s.note("datastore", fmt.Sprintf("datastore %s failed: %v", s.cfg.Device, ev.Err))
	case sdcard.EventDeviceBack:
		s.note("datastore", "datastore "+s.cfg.Device+" works again")
	case sdcard.EventConnected, sdcard.EventDisconnected:
		s.log.Info("mirror "+ev.Kind.String(), "err", ev.Err)
	}
}

func (s *datastore) mirror() *sdcard.Mirror {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m
}

// SetPrimary makes this node the mirror's source; a new generation starts
// when it took over, and when a primary lost its peer (the engine repeats
// SetMirrorRole{Primary, NewGeneration} then).
func (s *datastore) SetPrimary(primary, newGeneration bool) {
	s.mu.Lock()
	was := s.primary
	s.primary = primary
	m := s.m
	s.mu.Unlock()
	if m == nil {
		return
	}
	if was && primary && newGeneration {
		// Still primary: the peer was lost. The generation is saved off
		// the daemon's loop; the mirror ignores it if a demotion came first.
		epoch := s.epoch()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if g, started, err := m.LostPeer(epoch); err != nil {
				s.log.Error("cannot start a new data generation after losing the peer", "err", err)
			} else if started {
				s.note("datastore", fmt.Sprintf("peer lost while primary: new data generation %v", g))
			}
		}()
		return
	}
	if primary && newGeneration {
		if g, err := m.NewGeneration(s.epoch()); err != nil {
			s.log.Error("cannot start a new data generation", "err", err)
		} else {
			s.log.Info("new data generation", "generation", g)
		}
	}
	m.SetPrimary(primary)
}

// Flush sends the last data to the peer before a planned handover.
func (s *datastore) Flush(ctx context.Context) error {
	m := s.mirror()
	if m == nil {
		return errors.New("the datastore is not open")
	}
	return m.Flush(ctx)
}

// Sync starts a round now; its result goes to the logbook.
func (s *datastore) Sync() error {
	m := s.mirror()
	if m == nil {
		return errors.New("the datastore is not open")
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
		defer cancel()
		if _, err := m.SyncNow(ctx); err != nil {
			s.note("sync-failed", "sync: "+err.Error())
		}
	}()
	return nil
}

// Verify compares both sides block by block.
func (s *datastore) Verify(ctx context.Context) (string, error) {
	m := s.mirror()
	if m == nil {
		return "", errors.New("the datastore is not open")
	}
	blocks, err := m.Verify(ctx)
	if err != nil {
		return "", err
	}
	return verifyText(blocks), nil
}

// verifyText is verify's answer for the blocks that differ.
func verifyText(blocks []uint64) string {
	if len(blocks) == 0 {
		return "identical: every block matches the peer's\n"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d blocks differ:", len(blocks))
	for i, n := range blocks {
		if i == 200 {
			fmt.Fprintf(&b, " ... (%d more)", len(blocks)-i)
			break
		}
		fmt.Fprintf(&b, " %d", n)
	}
	b.WriteString("\n")
	return b.String()
}

// Resolve ends a split brain, keeping this node's data or the peer's.
func (s *datastore) Resolve(ctx context.Context, keepLocal bool) error {
	m := s.mirror()
	if m == nil {
		return errors.New("the datastore is not open")
	}
	return m.Resolve(ctx, keepLocal)
}

// Status reports the mirror for `status`.
func (s *datastore) Status() MirrorStatus {
	m := s.mirror()
	if m == nil {
		return MirrorStatus{State: "off", Device: s.cfg.Device}
	}
	st := m.Status()
	ms := MirrorStatus{
		State:      st.State.String(),
		Percent:    st.Percent,
		Rate:       int64(st.Rate),
		Device:     s.cfg.Device,
		Generation: fmt.Sprintf("%016x", st.Generation),
		Behind:     st.Behind,
		Direction:  direction(st.Direction),
	}
	if st.ETA > 0 {
		ms.ETA = st.ETA.Round(time.Second).String()
	}
	return ms
}

// Stop stops the mirror and closes the device.
func (s *datastore) Stop() {
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
	if m := s.mirror(); m != nil {
		if err := m.Close(); err != nil {
			s.log.Warn("closing the datastore", "err", err)
		}
	}
}

// direction names the direction of the last exchange, "" when disconnected.
func direction(d sdcard.Direction) string {
	switch d {
	case sdcard.DirNone, sdcard.DirFromLocal, sdcard.DirFromRemote, sdcard.DirSplitBrain:
		return d.String()
	}
	return ""
}
