package daemon

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/pairguard/pairguard/drivers/rawether"
	"github.com/pairguard/pairguard/firmware/engine"
	"github.com/pairguard/pairguard/firmware/frame"
	"github.com/pairguard/pairguard/firmware/pairing"
)

// The failover-line frames: the socket filter, the receive goroutines, the
// send path and the one mapping between frame.Frame and engine.PeerInfo.
//
// A receive goroutine does all the work a flood could make expensive off
// the loop: the socket filter drops frames of another EtherType, magic or
// pair id in the kernel; Decode checks the exact length before the HMAC;
// the replay window runs there too. Only frames that passed all of it (and
// frames of another protocol version, for the alarm) reach the loop, so
// garbage costs the loop nothing and the heartbeats keep their rhythm.

const (
	// refreshEvery is how often a receive goroutine checks that its
	// interface is still the one its socket is bound to.
	refreshEvery = 500 * time.Millisecond
	// replaySaveEvery is how often the peers' replay marks are written
	// while frames arrive (and at once when a peer's boot id grows).
	replaySaveEvery = time.Minute
	// faultLAN2Missing is the fault of a failover-line interface that
	// stays gone (connection-wait-time).
	faultLAN2Missing = "lan2-missing"
)

// wireState is the daemon's state of the frame paths.
type wireState struct {
	mu       sync.Mutex // replay persistence, shared by the receive goroutines
	saveMu   sync.Mutex // one writer of the replay marks at a time (apart from mu: the loop never waits for an fsync)
	peerBoot uint64     // the highest peer boot id persisted
	saved    time.Time  // when the replay marks were last written

	sendDown [3]bool // per engine.Path: the last send failed with the link down
}

// received is what a receive goroutine hands to the loop.
type received struct {
	path    engine.Path
	f       frame.Frame
	ok      bool  // f is new and authenticated: for the engine
	version uint8 // an authenticated frame of this other protocol version
	raw     []byte
	src     net.HardwareAddr
	link    *linkReport
	pair    *pairing.Message // a pairing message, for the pairing machine only
	// settings is a part of the peer's pair-level settings (settings.go).
	settings *frame.SettingsPart
}

// linkReport tells the loop that the fault of a missing interface starts
// or ends.
type linkReport struct{ fault bool }

// errNotForEngine counts authenticated frames of a type the engine does
// not take (PAIR-HELLO) as "other".
var errNotForEngine = errors.New("daemon: frame type not handled")

// frameFilter is the socket filter of this pair's frames: the magic and
// the pair id at their offsets in every protocol version, at most
// frame.MaxLen bytes, and exactly the length of its version for the
// versions this build knows.
func frameFilter(secret []byte) *rawether.Filter {
	id := binary.BigEndian.AppendUint32(nil, frame.PairID(secret))
	f := &rawether.Filter{
		Match:  []rawether.Match{{Offset: 0, Value: []byte(frame.Magic)}, {Offset: frame.PairIDOffset, Value: id}},
		MaxLen: frame.MaxLen,
	}
	for v := range frame.ProtocolVersion + 1 {
		if n := frame.VersionLen(v); n > 0 {
			f.Lengths = append(f.Lengths, rawether.LengthIf{Offset: frame.VersionOffset, Value: v, Len: n})
		}
	}
	return f
}

// newNonce draws the nonce of this start: random, never zero.
func newNonce() (uint64, error) {
	var b [8]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			return 0, err
		}
		if v := binary.BigEndian.Uint64(b[:]); v != 0 {
			return v, nil
		}
	}
}

func (d *Daemon) goRecv(ctx context.Context, c rawether.Conn, path engine.Path) {
	persist := d.cfg.Engine.ConnectionWait
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		// Longer payloads are not frames; Recv reports them truncated.
		buf := make([]byte, max(frame.MaxLen, frame.PairMaxLen))
		var software string // the peer's software of the last frame (see decode)
		l := linkWatch{d: d, c: c, path: path, persist: persist}
		next := time.Now()
		for ctx.Err() == nil {
			if now := time.Now(); !now.Before(next) {
				next = now.Add(refreshEvery)
				rep := l.check(now)
				// Wake up for the next check even when nothing arrives; set
				// after the check, since a reopened socket has no deadline.
				_ = c.SetReadDeadline(next.Add(refreshEvery / 10))
				if rep != nil && !d.toLoop(ctx, received{path: path, link: rep}) {
					return
				}
			}
			n, src, err := c.Recv(buf)
			switch {
			case err == nil:
			case errors.Is(err, net.ErrClosed) || ctx.Err() != nil:
				return
			case errors.Is(err, os.ErrDeadlineExceeded):
				continue
			case errors.Is(err, rawether.ErrTruncated):
				d.frames.Record(frame.ErrMalformed)
				continue
			case errors.Is(err, rawether.ErrLinkDown):
				// Look at the interface soon (not at once: no busy loop
				// should the error repeat).
				if soon := time.Now().Add(refreshEvery / 10); soon.Before(next) {
					next = soon
				}
				continue
			default:
				d.log.Warn("receive failed", "path", path, "err", err)
				time.Sleep(10 * time.Millisecond) // an unknown error: no busy loop
				continue
			}
			r, forLoop := d.decode(path, buf[:n], src, &software)
			if forLoop && !d.toLoop(ctx, r) {
				return
			}
		}
	}()
	d.wg.Go(func() { <-ctx.Done(); c.Close() })
}

func (d *Daemon) toLoop(ctx context.Context, r received) bool {
	select {
	case d.rx <- r:
		return true
	case <-ctx.Done():
		return false
	}
}

// decode checks one payload on a receive goroutine and counts the drops.
// It reports whether the loop must see the result. software holds the
// software version of the receiver's last frame: a frame that says the
// same reuses the string, so decoding allocates nothing.
//
// src is the receiver's (valid until its next Recv): the loop gets a copy
// only where it uses it, for a capture or a pairing message.
func (d *Daemon) decode(path engine.Path, b []byte, src net.HardwareAddr, software *string) (received, bool) {
	r := received{path: path}
	if d.capturing.Load() { // only while a capture runs
		r.raw = append([]byte(nil), b...)
		r.src = slices.Clone(src)
	}
	if frame.IsPairFrame(b) {
		if r.src == nil {
			r.src = slices.Clone(src)
		}
		return d.decodePair(r, b) // never to the engine
	}
	if frame.IsSettingsFrame(b) {
		return d.decodeSettings(r, b) // never to the engine
	}
	key := d.key.Load()
	if key == nil { // a taught-in node, unpaired: no frame is of its pair
		d.frames.Record(frame.ErrPair)
		return r, r.raw != nil
	}
	r.f.Software = *software
	err := frame.Decode(b, key, &r.f)
	*software = r.f.Software
	switch {
	case err != nil && versionOf(err, &r.version):
	case err == nil && r.f.Type != frame.TypeHeartbeat && r.f.Type != frame.TypeRelease:
		err = errNotForEngine
	case err == nil:
		if err = d.replay.Check(r.f.NodeID, r.f.BootID, r.f.Seq); err == nil {
			r.ok = true
			d.persistReplay(r.f.NodeID, r.f.BootID)
		}
	}
	d.frames.Record(err)
	return r, r.ok || r.version != 0 || r.raw != nil
}

// versionOf sets v to the version of a frame of another protocol version.
// Apart from decode, so that the error's target escapes only when there is
// an error.
func versionOf(err error, v *uint8) bool {
	var ve *frame.VersionError
	if errors.As(err, &ve) {
		*v = ve.Version
		return true
	}
	return false
}

// persistReplay writes the replay marks when a peer's boot id grew, and
// every replaySaveEvery, so that after a restart the window starts close
// to where it was. Freshness does not depend on it (the nonce does that);
// it keeps the stale frames a restart lets through few.
func (d *Daemon) persistReplay(node, boot uint64) {
	if node == d.nodeID {
		return
	}
	w := &d.wire
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	if boot <= w.peerBoot && now.Sub(w.saved) < replaySaveEvery {
		return
	}
	w.peerBoot = max(w.peerBoot, boot)
	w.saved = now
	// In the background: in drain mode decode runs on the loop, and an
	// fsync there would delay the heartbeats.
	d.wg.Go(func() {
		w.saveMu.Lock()
		defer w.saveMu.Unlock()
		if err := d.state.saveReplay(d.replay, d.nodeID); err != nil {
			d.log.Warn("cannot persist the peer's replay marks", "err", err)
		}
	})
}

// receive handles on the loop what a receive goroutine handed over.
func (d *Daemon) receive(r received) { d.receiveAt(r, d.mono()) }

// receiveAt is receive for a frame that arrived at engine time now.
func (d *Daemon) receiveAt(r received, now time.Duration) {
	if r.raw != nil {
		d.feedCaptures(r.path, r.src, r.raw, false)
	}
	switch {
	case r.link != nil:
		d.apply(d.eng.Step(now, engine.FaultChanged{Reason: faultLAN2Missing, Active: r.link.fault}))
	case r.pair != nil:
		d.pairReceived(r)
	case r.settings != nil:
		d.settingsReceived(r)
	case r.version != 0:
		d.apply(d.eng.Step(now, engine.PeerIncompatible{Path: r.path, Version: r.version}))
	case r.ok:
		d.apply(d.countDrops(d.eng.StepFrame(now, engine.FrameReceived{Path: r.path, Peer: peerInfo(&r.f)})))
	}
}

// countDrops counts the frames the engine dropped and returns the other
// actions.
func (d *Daemon) countDrops(acts []engine.Action) []engine.Action {
	out := acts[:0]
	for _, a := range acts {
		if fd, ok := a.(engine.FrameDropped); ok {
			switch fd.Reason {
			case engine.DropStale:
				d.frames.Stale.Add(1)
			case engine.DropReflected:
				d.frames.Reflected.Add(1)
			}
			continue
		}
		out = append(out, a)
	}
	return out
}

// peerInfo and frameFrom are the one mapping between the wire frame and
// the engine's PeerInfo.
func peerInfo(f *frame.Frame) engine.PeerInfo {
	kind := engine.FrameHeartbeat
	if f.Type == frame.TypeRelease {
		kind = engine.FrameRelease
	}
	return engine.PeerInfo{
		Kind:       kind,
		NodeID:     f.NodeID,
		BootID:     f.BootID,
		Nonce:      f.Nonce,
		Echo:       f.Echo,
		Mode:       engine.Mode(f.Mode),
		Role:       engine.Role(f.Role),
		Preferred:  f.Flags.Has(frame.FlagPreferred),
		Handover:   f.Flags.Has(frame.FlagHandover),
		Eligible:   f.Flags.Has(frame.FlagEligible),
		Epoch:      f.Epoch,
		Data:       engine.DataState(f.DataState),
		Generation: f.Generation,
		History:    f.History,
		Mirror:     engine.MirrorState(f.MirrorState),
		Percent:    f.MirrorPercent,
		Software:   f.Software,
		Seq:        f.Seq,
	}
}

// frameFrom builds the frame that says p; the caller sets Seq and FlagLAN1.
func frameFrom(p engine.PeerInfo, pair uint32) frame.Frame {
	t := frame.TypeHeartbeat
	if p.Kind == engine.FrameRelease {
		t = frame.TypeRelease
	}
	var fl frame.Flags
	if p.Preferred {
		fl |= frame.FlagPreferred
	}
	if p.Handover {
		fl |= frame.FlagHandover
	}
	if p.Eligible {
		fl |= frame.FlagEligible
	}
	return frame.Frame{
		Type:          t,
		Flags:         fl,
		PairID:        pair,
		NodeID:        p.NodeID,
		Mode:          uint8(p.Mode),
		Role:          uint8(p.Role),
		DataState:     uint8(p.Data),
		MirrorState:   uint8(p.Mirror),
		MirrorPercent: p.Percent,
		Epoch:         p.Epoch,
		BootID:        p.BootID,
		Nonce:         p.Nonce,
		Echo:          p.Echo,
		Generation:    p.Generation,
		History:       p.History,
		Software:      p.Software,
	}
}

func (d *Daemon) send(a engine.Send) {
	key := d.key.Load()
	if key == nil {
		return // unpaired: no heartbeats without a pair key
	}
	f := frameFrom(a.Info, key.PairID())
	copies := 1
	if a.Info.Kind == engine.FrameRelease {
		copies = 3 // a lost RELEASE costs a failover-time; send it thrice
	}
	for range copies {
		for _, p := range []struct {
			on   bool
			c    rawether.Conn
			path engine.Path
		}{{a.LAN2, d.deps.LAN2, engine.PathLAN2}, {a.LAN1, d.deps.LAN1, engine.PathLAN1}} {
			if !p.on || p.c == nil {
				continue
			}
			d.seq++
			f.Seq = d.seq
			f.Flags &^= frame.FlagLAN1
			if p.path == engine.PathLAN1 {
				f.Flags |= frame.FlagLAN1
			}
			b, err := f.AppendBinary(d.buf[:0], key)
			if err != nil {
				d.log.Error("cannot encode a frame", "err", err)
				return
			}
			down := &d.wire.sendDown[p.path]
			if err := p.c.Send(rawether.Broadcast, b); err != nil {
				if errors.Is(err, rawether.ErrLinkDown) && !*down {
					*down = true
					d.log.Warn("cannot send heartbeats: the interface is down or gone", "path", p.path, "err", err)
				} else {
					d.log.Debug("send failed", "path", p.path, "err", err)
				}
				continue
			}
			if *down {
				*down = false
				d.log.Info("heartbeats go out again", "path", p.path)
			}
			d.frames.Sent.Add(1)
			if len(d.captures) > 0 { // Addr returns a copy: only when used
				d.feedCaptures(p.path, p.c.Addr(), b, true)
			}
		}
	}
}

// linkWatch follows, on a receive goroutine, whether the interface of a
// Conn is still there: it reopens the socket when the interface was
// created again, warns, and reports the fault lan2-missing when the
// failover line stays gone for persist.
type linkWatch struct {
	d       *Daemon
	c       rawether.Conn
	path    engine.Path
	persist time.Duration

	gone    time.Time // since when the interface is missing (zero: present)
	faulted bool
}

func (l *linkWatch) check(now time.Time) *linkReport {
	reopened, err := l.c.Refresh()
	switch {
	case errors.Is(err, rawether.ErrNoInterface):
		if l.gone.IsZero() {
			l.gone = now
			l.d.log.Warn("the interface is gone; no heartbeats on this path until it is back", "path", l.path, "err", err)
		}
		if l.path == engine.PathLAN2 && !l.faulted && now.Sub(l.gone) >= l.persist {
			l.faulted = true
			return &linkReport{fault: true}
		}
		return nil
	case err != nil:
		l.d.log.Warn("cannot reopen the interface", "path", l.path, "err", err)
		return nil
	}
	if reopened {
		l.d.log.Warn("the interface was created again; socket reopened", "path", l.path, "addr", l.c.Addr())
	} else if !l.gone.IsZero() {
		l.d.log.Warn("the interface is back", "path", l.path)
	}
	l.gone = time.Time{}
	if l.faulted {
		l.faulted = false
		return &linkReport{fault: false}
	}
	return nil
}
