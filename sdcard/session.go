package sdcard

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync/atomic"
	"time"
)

// errNotStarted marks a round that failed before anything was sent.
var errNotStarted = errors.New("sdcard: round not started")

// errReplaced ends a session when a newer connection from the peer arrives.
var errReplaced = errors.New("sdcard: connection replaced")

const (
	hashBatch = 1024 // coarse sums per frame
	fineBatch = 64   // blocks per fine-hash request
)

type frame struct {
	t   msgType
	p   []byte
	err error
}

// sess is one connection's state, owned by the Run goroutine.
type sess struct {
	fc  *frameConn
	in  chan frame
	ctx context.Context
}

func (m *Mirror) hello() helloMsg {
	m.mu.Lock()
	defer m.mu.Unlock()
	g := m.meta.Gen
	g.History = append([]uint64(nil), g.History...)
	return helloMsg{
		Version: ProtocolVersion, NodeID: m.meta.NodeID, Size: uint64(m.geom.Size),
		BlockSize: uint32(m.geom.BlockSize), Hash: m.cfg.Hash, Primary: m.primary, Gen: g,
	}
}

func (m *Mirror) session(ctx context.Context, c net.Conn, conns <-chan net.Conn) (net.Conn, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	context.AfterFunc(ctx, func() { c.Close() })
	rw := struct {
		io.Reader
		io.Writer
	}{c, newLimitWriter(c, m.cfg.BandwidthLimit)}
	s := &sess{fc: newFrameConn(rw), in: make(chan frame, 16), ctx: ctx}
	go func() {
		for {
			t, p, err := s.fc.readFrame()
			f := frame{t: t, p: append([]byte(nil), p...), err: err}
			select {
			case s.in <- f:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	select { // this Hello carries any change poked before the session
	case <-m.kick:
	default:
	}
	if err := m.sendHello(s); err != nil {
		return nil, err
	}
	f, err := m.next(s, 10*time.Second)
	if err != nil {
		return nil, err
	}
	if f.t != msgHello {
		return nil, fmt.Errorf("sdcard: expected hello, got %v", f.t)
	}
	if err := m.peerHello(s, f.p, true); err != nil {
		return nil, err
	}
	m.mu.Lock()
	m.connected = true
	m.mu.Unlock()
	m.log.Info("mirror connected", "peer", c.RemoteAddr().String())
	m.emit(Event{Kind: EventConnected, Text: c.RemoteAddr().String()})

	var tick <-chan time.Time
	if m.cfg.Interval > 0 {
		t := time.NewTicker(m.cfg.Interval)
		defer t.Stop()
		tick = t.C
	}
	pending := true // the first round runs at once
	var waiting []command
	defer func() {
		for _, w := range waiting {
			w.reply <- cmdResult{err: ErrNotConnected}
		}
	}()
	var retry <-chan time.Time
	compare := false // the next round compares sums even with a valid bitmap
	for {
		if pending && m.canSend() {
			pending = false
			st, err := m.sourceRound(s, compare)
			compare = false
			for _, w := range waiting {
				w.reply <- cmdResult{stats: st, err: err}
			}
			waiting = nil
			switch {
			case errors.Is(err, ErrBusy):
				retry = time.After(time.Second)
			case errors.Is(err, errNotStarted):
				// A local failure before RoundStart: the stream is clean;
				// the next tick or command tries again.
			case err != nil:
				return nil, err
			}
		}
		select {
		case <-retry:
			pending = true
		case <-ctx.Done():
			return nil, ctx.Err()
		case nc := <-conns:
			return nc, errReplaced
		case <-m.kick:
			if err := m.sendHello(s); err != nil {
				return nil, err
			}
			if err := m.autoResolve(); err != nil { // a demotion may allow it now
				return nil, err
			}
			pending = true
		case <-tick:
			pending = true
		case f := <-s.in:
			if f.err != nil {
				return nil, f.err
			}
			if err := m.peerRequest(s, f); err != nil {
				return nil, err
			}
		case cmd := <-m.cmds:
			switch cmd.kind {
			case cmdSync, cmdFlush:
				if m.canSend() {
					pending = true
					compare = compare || cmd.kind == cmdSync
					waiting = append(waiting, cmd)
					continue
				}
				if m.isPrimary() {
					cmd.reply <- cmdResult{err: fmt.Errorf("sdcard: cannot send (%v): %w", m.direction(), ErrSplitBrain)}
					continue
				}
				err := s.fc.write(msgSyncReq, nil)
				if err == nil {
					err = s.fc.flush()
				}
				cmd.reply <- cmdResult{err: err}
			case cmdVerify:
				blocks, err := m.verify(s)
				cmd.reply <- cmdResult{blocks: blocks, err: err}
				if err != nil && !errors.Is(err, ErrBusy) {
					return nil, err
				}
			case cmdDiscardPeer:
				err := s.fc.write(msgDiscard, nil)
				if err == nil {
					err = s.fc.flush()
				}
				cmd.reply <- cmdResult{err: err}
			}
		}
	}
}

func (m *Mirror) sendHello(s *sess) error {
	if err := s.fc.write(msgHello, m.hello().append(nil)); err != nil {
		return err
	}
	return s.fc.flush()
}

func (m *Mirror) isPrimary() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.primary
}

func (m *Mirror) direction() Direction {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.dir
}

// canSend says whether this node may start a round: it is primary, the
// peer is not, and the generations allow it.
func (m *Mirror) canSend() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.primary && !m.peer.Primary && (m.dir == DirNone || m.dir == DirFromLocal) &&
		m.meta.Gen.Data == DataUpToDate
}

// peerHello records the peer's Hello and what follows from it.
func (m *Mirror) peerHello(s *sess, p []byte, first bool) error {
	h, err := decodeHello(p)
	if err != nil {
		return err
	}
	if h.Version != ProtocolVersion || h.BlockSize != uint32(m.geom.BlockSize) || h.Hash != m.cfg.Hash {
		err := fmt.Errorf("%w: protocol %d block size %d hash %v (local %d, %d, %v)", ErrIncompatible,
			h.Version, h.BlockSize, h.Hash, ProtocolVersion, m.geom.BlockSize, m.cfg.Hash)
		m.emit(Event{Kind: EventIncompatible, Err: err})
		return err
	}
	m.mu.Lock()
	local := m.meta.Gen
	prev := m.dir
	m.peer, m.peerKnown = h, true
	m.dir = Decide(local, h.Gen)
	dir, primary := m.dir, m.primary
	outdated := dir == DirFromRemote && local.Data == DataUpToDate
	if outdated {
		m.meta.Gen.Data = DataOutdated
		if err := m.meta.Save(); err != nil {
			m.mu.Unlock()
			return err
		}
	}
	if dir != DirNone {
		m.synced = false
	}
	m.mu.Unlock()
	if outdated {
		m.log.Info("mirror data outdated: the peer holds newer data", "local", local, "peer", h.Gen)
		m.emit(Event{Kind: EventOutdated, Local: local, Remote: h.Gen})
	}
	if dir == DirSplitBrain && (first || prev != DirSplitBrain) {
		m.log.Error("mirror split brain", "local", local, "peer", h.Gen, "policy", m.cfg.SplitBrain)
		m.emit(Event{Kind: EventSplitBrain, Local: local, Remote: h.Gen})
	}
	if dir == DirSplitBrain && !primary {
		return m.autoResolve()
	}
	return nil
}

// autoResolve applies the discard-zero-changes policy to a split brain:
// a secondary that provably changed nothing since the last completed round
// discards its generation; the peer's data is its data plus the peer's
// changes, so nothing is lost. A failed scan leaves the split brain.
func (m *Mirror) autoResolve() error {
	if m.cfg.SplitBrain != SplitBrainDiscardZeroChanges {
		return nil
	}
	m.mu.Lock()
	local, peer, primary := m.meta.Gen, m.peer.Gen, m.primary
	base, baseSum := m.meta.BaseGen, m.meta.BaseSum
	checked := m.sbChecked
	m.mu.Unlock()
	if primary || m.direction() != DirSplitBrain || checked == local.Current {
		return nil
	}
	why := ""
	switch {
	case base == 0:
		why = "no completed round is recorded"
	case !slices.Contains(local.History, base) ||
		(peer.Current != base && !slices.Contains(peer.History, base)):
		why = fmt.Sprintf("the last completed round (generation %016x) is not where the generations diverged", base)
	}
	if why == "" {
		sums, err := m.sums(m.geom, nil)
		if err != nil {
			m.log.Warn("mirror split brain: cannot scan the device", "reason", err)
			return nil
		}
		if Digest(m.cfg.Hash, sums) != baseSum {
			why = "this node's data changed since the last completed round"
		}
	}
	m.mu.Lock()
	m.sbChecked = local.Current
	m.mu.Unlock()
	if why != "" {
		m.log.Warn("mirror split brain needs an operator: pairguard resolve", "policy", m.cfg.SplitBrain, "reason", why)
		return nil
	}
	return m.discardLocal("discard-zero-changes: this node changed nothing since the generations diverged")
}

// peerRequest handles a frame the peer sent on its own initiative.
func (m *Mirror) peerRequest(s *sess, f frame) error {
	switch f.t {
	case msgHello:
		return m.peerHello(s, f.p, false)
	case msgRoundStart:
		rs, err := decodeRoundStart(f.p)
		if err != nil {
			return err
		}
		return m.targetRound(s, rs)
	case msgVerifyReq:
		if _, err := m.sendSums(s, m.geom, false); err != nil {
			return err
		}
		return s.fc.flush()
	case msgDiscard:
		if m.direction() != DirSplitBrain {
			m.log.Warn("mirror ignores a discard request outside split brain")
			return nil
		}
		if err := m.discardLocal("peer's operator or policy"); err != nil {
			m.log.Warn("mirror refuses to discard", "reason", err)
		}
		return nil
	case msgSyncReq:
		if m.canSend() {
			m.poke() // through kick: the loop sends Hello and runs a round
		}
		return nil
	case msgBusy, msgHashes, msgHashesEnd, msgFineHashes, msgCommitted, msgAbort, msgRoundSize:
		m.log.Debug("mirror ignores a stray frame", "type", f.t)
		return nil
	}
	return fmt.Errorf("sdcard: unexpected %v", f.t)
}

// next waits for the next frame.
func (m *Mirror) next(s *sess, timeout time.Duration) (frame, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case f := <-s.in:
		if f.err != nil {
			return f, f.err
		}
		return f, nil
	case <-t.C:
		return frame{}, errors.New("sdcard: peer did not answer in time")
	case <-s.ctx.Done():
		return frame{}, s.ctx.Err()
	}
}

// expect waits for a reply during a round or a verify. Requests the peer
// starts meanwhile are answered Busy; Hello updates are recorded.
func (m *Mirror) expect(s *sess) (frame, error) {
	for {
		f, err := m.next(s, m.cfg.ReplyTimeout)
		if err != nil {
			return f, err
		}
		switch f.t {
		case msgHello:
			if err := m.peerHello(s, f.p, false); err != nil {
				return f, err
			}
		case msgRoundStart, msgVerifyReq:
			if err := s.fc.write(msgBusy, []byte("busy")); err != nil {
				return f, err
			}
			if err := s.fc.flush(); err != nil {
				return f, err
			}
		case msgSyncReq, msgDiscard:
		case msgBusy:
			return f, fmt.Errorf("%w: %s", ErrBusy, f.p)
		case msgAbort:
			return f, fmt.Errorf("sdcard: peer aborted: %s", f.p)
		default:
			return f, nil
		}
	}
}

// sums computes the coarse sum of every block of g.
func (m *Mirror) sums(g Geometry, each func(done uint64)) ([]Sum, error) {
	n := g.Blocks()
	out := make([]Sum, 0, n)
	per := max(1, (1<<20)/g.BlockSize)
	buf := make([]byte, per*g.BlockSize)
	for i := uint64(0); i < n; i += uint64(per) {
		off, _ := g.Span(i)
		ln := int(min(int64(len(buf)), g.Size-off))
		if _, err := m.dev.ReadAt(buf[:ln], off); err != nil {
			return nil, err
		}
		for o := 0; o < ln; o += g.BlockSize {
			out = append(out, m.cfg.Hash.Sum(buf[o:min(o+g.BlockSize, ln)]))
		}
		if each != nil {
			each(uint64(len(out)))
		}
	}
	return out, nil
}

// sendSums streams the coarse sums of g, then HashesEnd. With keep it
// also returns them.
func (m *Mirror) sendSums(s *sess, g Geometry, keep bool) ([]Sum, error) {
	var kept []Sum
	n := g.Blocks()
	per := max(1, (1<<20)/g.BlockSize)
	buf := make([]byte, per*g.BlockSize)
	batch := make([]Sum, 0, hashBatch)
	first := uint64(0)
	flushBatch := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := s.fc.write(msgHashes, encodeHashes(hashesMsg{First: first, Sums: batch})); err != nil {
			return err
		}
		first += uint64(len(batch))
		batch = batch[:0]
		return s.fc.flush()
	}
	for i := uint64(0); i < n; i += uint64(per) {
		off, _ := g.Span(i)
		ln := int(min(int64(len(buf)), g.Size-off))
		if _, err := m.dev.ReadAt(buf[:ln], off); err != nil {
			return nil, err
		}
		for o := 0; o < ln; o += g.BlockSize {
			batch = append(batch, m.cfg.Hash.Sum(buf[o:min(o+g.BlockSize, ln)]))
			if keep {
				kept = append(kept, batch[len(batch)-1])
			}
			if len(batch) == hashBatch {
				if err := flushBatch(); err != nil {
					return nil, err
				}
			}
		}
	}
	if err := flushBatch(); err != nil {
		return nil, err
	}
	return kept, s.fc.write(msgHashesEnd, nil)
}

// recvSums collects the peer's coarse sums until HashesEnd.
func (m *Mirror) recvSums(s *sess, each func(n uint64)) ([]Sum, error) {
	var out []Sum
	for {
		f, err := m.expect(s)
		if err != nil {
			return nil, err
		}
		switch f.t {
		case msgHashesEnd:
			return out, nil
		case msgHashes:
			h, err := decodeHashes(f.p)
			if err != nil {
				return nil, err
			}
			if h.First != uint64(len(out)) {
				return nil, fmt.Errorf("sdcard: sums from block %d, expected %d", h.First, len(out))
			}
			out = append(out, h.Sums...)
			if each != nil {
				each(uint64(len(out)))
			}
		default:
			return nil, fmt.Errorf("sdcard: expected sums, got %v", f.t)
		}
	}
}

// compareSums runs the local scan and receives the remote one at once,
// and returns the differing blocks over the longer of the two.
func (m *Mirror) compareSums(s *sess, g Geometry, progress func(uint64)) (diff []uint64, local, remote []Sum, err error) {
	type res struct {
		sums []Sum
		err  error
	}
	lc := make(chan res, 1)
	var localDone atomic.Uint64
	go func() {
		sums, err := m.sums(g, func(n uint64) { localDone.Store(n) })
		lc <- res{sums, err}
	}()
	remote, err = m.recvSums(s, func(n uint64) {
		if progress != nil {
			progress(min(n, localDone.Load()))
		}
	})
	l := <-lc
	if err != nil {
		return nil, nil, nil, err
	}
	if l.err != nil {
		return nil, nil, nil, l.err
	}
	diff = DiffCoarse(0, l.sums, remote)
	for i := min(len(l.sums), len(remote)); i < max(len(l.sums), len(remote)); i++ {
		diff = append(diff, uint64(i))
	}
	return diff, l.sums, remote, nil
}

func (m *Mirror) verify(s *sess) ([]uint64, error) {
	if err := s.fc.write(msgVerifyReq, nil); err != nil {
		return nil, err
	}
	if err := s.fc.flush(); err != nil {
		return nil, err
	}
	diff, _, _, err := m.compareSums(s, m.geom, nil)
	if err == nil {
		m.log.Info("mirror verify", "differing", len(diff))
	}
	return diff, err
}

func (m *Mirror) setProgress(total, done uint64) {
	m.mu.Lock()
	m.prog.total, m.prog.done = total, done
	m.mu.Unlock()
}

func (m *Mirror) beginRound(s *sess) (uint64, time.Time, uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.round++
	m.inRound = true
	w0 := s.fc.written.Load() + s.fc.read.Load()
	start := time.Now()
	m.prog = progress{start: start, wire: func() uint64 { return s.fc.written.Load() + s.fc.read.Load() - w0 }}
	return m.round, start, w0
}

func (m *Mirror) endRound(st RoundStats, err error) {
	m.mu.Lock()
	m.inRound = false
	if err == nil {
		m.last = st
		m.behind = 0
		m.synced = true
		m.dir = DirNone
	} else {
		m.synced = false
	}
	m.mu.Unlock()
	if err == nil {
		m.log.Info("mirror round done", "round", st.Round, "mode", st.Mode, "sender", st.Sender,
			"blocks", st.Blocks, "bytes", st.DataBytes, "wire", st.WireBytes, "duration", st.Duration.Round(time.Millisecond))
		m.emit(Event{Kind: EventRoundDone, Round: st})
	} else if !errors.Is(err, ErrBusy) {
		m.log.Warn("mirror round failed", "round", st.Round, "reason", err)
		m.emit(Event{Kind: EventRoundFailed, Round: st, Err: err})
	}
}

// sourceRound sends one round to the peer.
func (m *Mirror) sourceRound(s *sess, compare bool) (st RoundStats, err error) {
	m.mu.Lock()
	mode := RoundChecksum
	if !compare && m.cfg.Mode == ModeOnline && m.meta.BitmapValid && m.peer.Gen.Current == m.meta.SyncedGen &&
		m.peer.Gen.Current == m.meta.Gen.Current && m.peer.Gen.Data == DataUpToDate {
		mode = RoundBitmap
	}
	// A target that never held data has nothing worth comparing: every
	// block goes (zero ones as markers) without waiting for its sums, so
	// an initial sync streams at once, at line rate.
	full := m.peer.Gen.Current == 0
	if full {
		mode = RoundBitmap
	}
	snap := m.meta.Dirty.Clone()
	m.meta.Dirty.Clear()
	m.mu.Unlock()
	g0 := m.geom
	round, start, w0 := m.beginRound(s)
	st = RoundStats{Round: round, Mode: mode, Sender: true}
	committed := false
	// localSums are this node's block sums as read for the round (checksum
	// and full rounds): their digest is the base a later split brain is
	// measured against. Writes during the round make it differ, which only
	// makes the policy more careful.
	var localSums []Sum
	if full {
		localSums = make([]Sum, g0.Blocks())
	}
	// This runs last, after any thaw: the state dir may live on the frozen
	// file system.
	defer func() {
		if err == nil && committed {
			m.mu.Lock()
			m.meta.SyncedGen = m.meta.Gen.Current
			m.meta.BitmapValid = m.cfg.Mode == ModeOnline
			m.meta.BaseGen, m.meta.BaseSum = 0, Sum{}
			if localSums != nil {
				m.meta.BaseGen, m.meta.BaseSum = m.meta.Gen.Current, Digest(m.cfg.Hash, localSums)
			}
			m.peer.Gen = m.meta.Gen
			err = m.meta.Save()
			m.mu.Unlock()
		}
		st.Duration = time.Since(start)
		st.WireBytes = s.fc.written.Load() + s.fc.read.Load() - w0
		if err != nil {
			m.mu.Lock()
			m.meta.Dirty.Or(snap)
			m.mu.Unlock()
		}
		m.endRound(st, err)
	}()
	if m.cfg.FreezeMount != "" {
		thaw, err := Freeze(m.cfg.FreezeMount)
		if err != nil {
			return st, fmt.Errorf("%w: %w", errNotStarted, err)
		}
		defer func() {
			if terr := thaw(); terr != nil {
				m.log.Error("mirror thaw failed", "mount", m.cfg.FreezeMount, "reason", terr)
				err = errors.Join(err, terr)
			}
		}()
	}
	g := m.geom
	if err := s.fc.write(msgRoundStart, encodeRoundStart(roundStartMsg{Round: round, Mode: mode, Source: m.hello()})); err != nil {
		return st, err
	}
	if err := s.fc.flush(); err != nil {
		return st, err
	}
	var diff []uint64
	var remote []Sum
	if mode == RoundChecksum {
		blocks := g.Blocks()
		diff, localSums, remote, err = m.compareSums(s, g, func(n uint64) { m.setProgress(2*blocks, n) })
		if err != nil {
			return st, err
		}
		st.Scanned = blocks
		m.log.Debug("mirror sums compared", "round", round, "differing", len(diff), "after", time.Since(start))
	} else if full {
		diff = make([]uint64, g.Blocks())
		for i := range diff {
			diff[i] = uint64(i)
		}
	} else {
		diff = snap.List()
	}
	st.Blocks = uint64(len(diff))
	m.mu.Lock()
	m.behind = st.Blocks
	base := m.prog.done
	m.mu.Unlock()
	total := base + uint64(len(diff))
	if mode == RoundChecksum {
		total = 2 * g.Blocks()
	}
	send := func(d dataMsg) error {
		st.Records++
		st.DataBytes += uint64(len(d.Bytes))
		return s.fc.write(msgData, d.append(nil))
	}
	// sendSubs sends the listed sub-blocks of block b (all when subs is
	// nil), zero ones as markers unless the target is known to be zero.
	sendSubs := func(b uint64, p []byte, subs []int, targetZero bool) error {
		if subs == nil {
			for i := range (len(p) + FineSize - 1) / FineSize {
				subs = append(subs, i)
			}
		}
		for _, sub := range subs {
			q := p[sub*FineSize : min((sub+1)*FineSize, len(p))]
			d := dataMsg{Block: b, Sub: uint16(sub), Bytes: q}
			if IsZero(q) {
				if targetZero {
					continue
				}
				d = dataMsg{Block: b, Sub: uint16(sub), Zero: true}
			}
			if err := send(d); err != nil {
				return err
			}
		}
		return nil
	}
	zeroSums := map[int]Sum{}
	targetZero := func(b uint64, n int) bool {
		if b >= uint64(len(remote)) {
			return false
		}
		z, ok := zeroSums[n]
		if !ok {
			z = m.cfg.Hash.Sum(zeroPage[:n])
			zeroSums[n] = z
		}
		return remote[b] == z
	}
	// Two batches are in flight: the fine request of the next one goes
	// out before the data of the current one, so the link does not idle
	// while the target hashes.
	type batch struct {
		need []uint64
		data map[uint64][]byte
	}
	bufs := [2][]byte{make([]byte, fineBatch*g.BlockSize), make([]byte, fineBatch*g.BlockSize)}
	var sent uint64 // differing blocks handled, for the progress
	step := func() {
		sent++
		m.setProgress(total, base+sent*(total-base)/max(1, uint64(len(diff))))
	}
	prepare := func(blocks []uint64, buf []byte) (batch, error) {
		bt := batch{data: map[uint64][]byte{}}
		for k, b := range blocks {
			off, n := g.Span(b)
			p := buf[k*g.BlockSize : k*g.BlockSize+n]
			if _, err := m.dev.ReadAt(p, off); err != nil {
				return bt, m.abort(s, err)
			}
			if full {
				localSums[b] = m.cfg.Hash.Sum(p)
			}
			switch {
			case IsZero(p):
				if err := send(dataMsg{Block: b, Sub: wholeBlock, Zero: true}); err != nil {
					return bt, err
				}
				step()
			case targetZero(b, n):
				// One record for the whole block unless some of it is zero.
				whole := true
				for o := 0; o < n && whole; o += FineSize {
					whole = !IsZero(p[o:min(o+FineSize, n)])
				}
				if whole {
					if err := send(dataMsg{Block: b, Sub: wholeBlock, Bytes: p}); err != nil {
						return bt, err
					}
				} else if err := sendSubs(b, p, nil, true); err != nil {
					return bt, err
				}
				step()
			default:
				bt.need = append(bt.need, b)
				bt.data[b] = p
			}
		}
		if len(bt.need) > 0 {
			if err := s.fc.write(msgFineReq, encodeBlocks(bt.need)); err != nil {
				return bt, err
			}
		}
		return bt, s.fc.flush()
	}
	finish := func(bt batch) error {
		if len(bt.need) == 0 {
			return nil
		}
		f, err := m.expect(s)
		if err != nil {
			return err
		}
		if f.t != msgFineHashes {
			return fmt.Errorf("sdcard: expected fine hashes, got %v", f.t)
		}
		es, err := decodeFine(f.p)
		if err != nil {
			return err
		}
		if len(es) != len(bt.need) {
			return fmt.Errorf("sdcard: %d fine entries for %d blocks", len(es), len(bt.need))
		}
		for k, e := range es {
			if e.Block != bt.need[k] {
				return fmt.Errorf("sdcard: fine entry for block %d, expected %d", e.Block, bt.need[k])
			}
			p := bt.data[e.Block]
			subs := DiffFine(m.cfg.Hash, p, e.Sums)
			step()
			if len(subs) == 0 {
				continue
			}
			if err := sendSubs(e.Block, p, subs, false); err != nil {
				return err
			}
		}
		return nil
	}
	// Tell the target how much it will surely receive (whole blocks onto
	// zeros), so that a round that cannot fit its journal goes in place
	// at once instead of journalling first.
	var sure uint64
	for _, b := range diff {
		if _, n := g.Span(b); targetZero(b, n) {
			sure += uint64(n)
		}
	}
	if sure > 0 {
		if err := s.fc.write(msgRoundSize, binary.LittleEndian.AppendUint64(nil, sure)); err != nil {
			return st, err
		}
	}
	var inflight *batch
	for i, k := 0, 0; i < len(diff); i, k = i+fineBatch, k+1 {
		bt, err := prepare(diff[i:min(i+fineBatch, len(diff))], bufs[k%2])
		if err != nil {
			return st, err
		}
		if inflight != nil {
			if err := finish(*inflight); err != nil {
				return st, err
			}
		}
		inflight = &bt
	}
	if inflight != nil {
		if err := finish(*inflight); err != nil {
			return st, err
		}
	}
	if err := s.fc.write(msgRoundEnd, encodeRoundEnd(roundEndMsg{Round: round, Records: st.Records})); err != nil {
		return st, err
	}
	if err := s.fc.flush(); err != nil {
		return st, err
	}
	f, err := m.expect(s)
	if err != nil {
		return st, err
	}
	if f.t != msgCommitted {
		return st, fmt.Errorf("sdcard: expected committed, got %v", f.t)
	}
	r, err := decodeU64(msgCommitted, f.p)
	if err != nil {
		return st, err
	}
	if r != round {
		return st, fmt.Errorf("sdcard: committed round %d, sent %d", r, round)
	}
	committed = true
	return st, nil
}

func (m *Mirror) abort(s *sess, cause error) error {
	if err := s.fc.write(msgAbort, []byte(cause.Error())); err == nil {
		s.fc.flush()
	}
	return cause
}

// refuse answers a RoundStart with Busy.
func (m *Mirror) refuse(s *sess, why string) error {
	m.log.Warn("mirror refuses a round", "reason", why)
	if err := s.fc.write(msgBusy, []byte(why)); err != nil {
		return err
	}
	return s.fc.flush()
}

// targetRound receives one round through the journal.
func (m *Mirror) targetRound(s *sess, rs roundStartMsg) (err error) {
	m.mu.Lock()
	local, primary := m.meta.Gen, m.primary
	m.mu.Unlock()
	switch dir := Decide(local, rs.Source.Gen); {
	case primary:
		return m.refuse(s, "a primary accepts no round")
	case !rs.Source.Primary:
		return m.refuse(s, "the sender is not primary")
	case dir != DirNone && dir != DirFromRemote:
		return m.refuse(s, "generations say "+dir.String())
	case int64(rs.Source.Size) > m.geom.Size:
		return m.refuse(s, fmt.Sprintf("device too small: %d bytes, sender has %d", m.geom.Size, rs.Source.Size))
	}
	g := Geometry{Size: int64(rs.Source.Size), BlockSize: m.geom.BlockSize}
	round, start, w0 := m.beginRound(s)
	st := RoundStats{Round: round, Mode: rs.Mode}
	inPlace, committed := false, false
	touched := NewBitmap(g.Blocks()) // blocks the round writes
	defer func() {
		st.Duration = time.Since(start)
		st.WireBytes = s.fc.written.Load() + s.fc.read.Load() - w0
		st.InPlace = inPlace
		// A journal that was committed stays for recovery at the next start.
		if err != nil && !committed {
			if rerr := m.journal.Reset(); rerr != nil {
				err = errors.Join(err, rerr)
			}
		}
		m.endRound(st, err)
	}()
	if m.journal.Pending() {
		// A committed round whose apply failed: finish it before anything
		// may truncate the journal.
		if err := m.finishPending(); err != nil {
			return m.refuse(s, "an earlier committed round cannot be applied: "+err.Error())
		}
	}
	if err := m.journal.Begin(rs.Round, g.Size); err != nil {
		return m.abort(s, err)
	}
	var pre []Sum // the device's sums before the round
	if rs.Mode == RoundChecksum {
		st.Scanned = g.Blocks()
		if pre, err = m.sendSums(s, g, true); err != nil {
			return err
		}
		if err := s.fc.flush(); err != nil {
			return err
		}
	}
	for {
		f, err := m.expect(s)
		if err != nil {
			return err
		}
		switch f.t {
		case msgFineReq:
			blocks, err := decodeBlocks(f.p)
			if err != nil {
				return err
			}
			es := make([]fineEntry, 0, len(blocks))
			buf := make([]byte, g.BlockSize)
			for _, b := range blocks {
				if b >= g.Blocks() {
					return fmt.Errorf("sdcard: fine request for block %d beyond %d", b, g.Blocks())
				}
				off, n := g.Span(b)
				if _, err := m.dev.ReadAt(buf[:n], off); err != nil {
					return m.abort(s, err)
				}
				es = append(es, fineEntry{Block: b, Sums: FineSums(m.cfg.Hash, buf[:n])})
			}
			if err := s.fc.write(msgFineHashes, encodeFine(es)); err != nil {
				return err
			}
			if err := s.fc.flush(); err != nil {
				return err
			}
		case msgData:
			d, err := decodeData(f.p)
			if err != nil {
				return err
			}
			if _, _, err := recordSpan(g, d); err != nil {
				return err
			}
			st.Records++
			st.DataBytes += uint64(len(d.Bytes))
			if !touched.Get(d.Block) {
				touched.Set(d.Block)
				st.Blocks++
			}
			if inPlace {
				if err := applyRecord(m.dev, g, d); err != nil {
					return m.abort(s, err)
				}
				continue
			}
			if err := m.journal.Append(d); err != nil {
				return m.abort(s, err)
			}
			if m.journal.Bytes() > m.cfg.JournalLimit {
				if err := m.goInPlace(g); err != nil {
					return m.abort(s, err)
				}
				inPlace = true
			}
		case msgRoundSize:
			n, err := decodeU64(msgRoundSize, f.p)
			if err != nil {
				return err
			}
			if !inPlace && int64(min(n, 1<<62)) > m.cfg.JournalLimit {
				if err := m.goInPlace(g); err != nil {
					return m.abort(s, err)
				}
				inPlace = true
			}
		case msgRoundEnd:
			re, err := decodeRoundEnd(f.p)
			if err != nil {
				return err
			}
			if re.Round != rs.Round || re.Records != st.Records {
				return fmt.Errorf("sdcard: round end %d with %d records, had round %d with %d",
					re.Round, re.Records, rs.Round, st.Records)
			}
			committed = true
			t0 := time.Now()
			if err := m.commit(g, rs.Source.Gen, inPlace, pre, touched); err != nil {
				return m.abort(s, err)
			}
			m.log.Debug("mirror round committed", "round", rs.Round, "in-place", inPlace, "commit", time.Since(t0))
			if err := s.fc.write(msgCommitted, binary.LittleEndian.AppendUint64(nil, rs.Round)); err != nil {
				return err
			}
			return s.fc.flush()
		default:
			return fmt.Errorf("sdcard: unexpected %v in a round", f.t)
		}
	}
}

// goInPlace is the fallback when a round outgrows the journal: the data
// is marked inconsistent (durably), the journalled records are written in
// place, and the rest of the round follows them directly.
func (m *Mirror) goInPlace(g Geometry) error {
	m.mu.Lock()
	m.meta.Gen.Data = DataInconsistent
	m.meta.BitmapValid = false
	err := m.meta.Save()
	m.mu.Unlock()
	if err != nil {
		return err
	}
	m.log.Warn("mirror round exceeds the journal: data inconsistent until it completes", "limit", m.cfg.JournalLimit)
	m.emit(Event{Kind: EventInconsistent, Text: fmt.Sprintf("round larger than the journal limit of %d bytes", m.cfg.JournalLimit)})
	if _, _, err := m.journal.Apply(m.dev, g, false); err != nil {
		return err
	}
	return m.journal.Reset()
}

// commit makes a received round durable in the documented order: the
// journal's commit record is fsynced; the data is marked inconsistent
// (persisted) before the journal is applied; the apply and the device
// sync follow; only then does the metadata say the new generation,
// up-to-date, and the journal is emptied. A failure anywhere leaves the
// node inconsistent with the committed journal kept for a retry.
func (m *Mirror) commit(g Geometry, src GenInfo, inPlace bool, pre []Sum, touched *Bitmap) error {
	gen := GenInfo{Current: src.Current, History: src.History, Data: DataUpToDate}
	if inPlace {
		if err := m.dev.Sync(); err != nil {
			return err
		}
	} else {
		if err := m.journal.Commit(gen); err != nil {
			return err
		}
		if err := m.markInconsistent(); err != nil {
			return err
		}
		if _, _, err := m.journal.Apply(m.dev, g, true); err != nil {
			return err
		}
	}
	base, ok := m.targetBase(g, pre, touched)
	m.mu.Lock()
	m.meta.Gen = gen
	m.meta.BitmapValid = false
	m.meta.Dirty.Clear()
	m.meta.BaseGen, m.meta.BaseSum = 0, Sum{}
	if ok {
		m.meta.BaseGen, m.meta.BaseSum = gen.Current, base
	}
	m.peer.Gen = gen
	err := m.meta.Save()
	m.mu.Unlock()
	if err != nil {
		return err
	}
	return m.journal.Reset()
}

// markInconsistent persists the data state inconsistent.
func (m *Mirror) markInconsistent() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.synced = false
	if m.meta.Gen.Data == DataInconsistent {
		return nil
	}
	m.meta.Gen.Data = DataInconsistent
	m.meta.BitmapValid = false
	return m.meta.Save()
}

// finishPending applies a committed journal still in the state directory
// (a crash or a failed apply) and adopts its generation.
func (m *Mirror) finishPending() error {
	gen, err := m.journal.Committed()
	if err != nil || gen == nil {
		return err
	}
	if err := m.markInconsistent(); err != nil {
		return err
	}
	if _, _, err := m.journal.Apply(m.dev, m.geom, true); err != nil {
		return err
	}
	m.mu.Lock()
	m.meta.Gen = *gen
	m.meta.Gen.Data = DataUpToDate
	m.meta.Dirty.Clear()
	m.meta.BitmapValid = false
	m.meta.BaseGen, m.meta.BaseSum = 0, Sum{}
	err = m.meta.Save()
	m.mu.Unlock()
	if err != nil {
		return err
	}
	m.log.Info("mirror journal replayed", "generation", fmt.Sprintf("%016x", gen.Current))
	return m.journal.Reset()
}

// targetBase is the digest of the device after a received round: the
// sums sent before it with the blocks the round wrote hashed again, or a
// full scan when those are not at hand.
func (m *Mirror) targetBase(g Geometry, pre []Sum, touched *Bitmap) (Sum, bool) {
	if pre == nil || g.Size != m.geom.Size || uint64(len(pre)) != m.geom.Blocks() {
		sums, err := m.sums(m.geom, nil)
		if err != nil {
			m.log.Warn("mirror cannot scan the device after a round", "reason", err)
			return Sum{}, false
		}
		return Digest(m.cfg.Hash, sums), true
	}
	sums := slices.Clone(pre)
	buf := make([]byte, g.BlockSize)
	for b := range touched.Len() {
		if !touched.Get(b) {
			continue
		}
		off, n := g.Span(b)
		if _, err := m.dev.ReadAt(buf[:n], off); err != nil {
			m.log.Warn("mirror cannot read the device after a round", "reason", err)
			return Sum{}, false
		}
		sums[b] = m.cfg.Hash.Sum(buf[:n])
	}
	return Digest(m.cfg.Hash, sums), true
}
