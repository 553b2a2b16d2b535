package sdcard

// The source side of a round: the primary compares, plans and sends.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// readAhead is how many bytes a full round reads from the device at once.
const readAhead = 1 << 20

// sourceRound sends one round to the peer.
func (m *Mirror) sourceRound(s *sess, compare bool) (st RoundStats, err error) {
	m.mu.Lock()
	plan := PlanRound(m.cfg.Mode == ModeOnline, m.meta.BitmapValid, compare, m.meta.Gen, m.peer.Gen, m.meta.SyncedGen)
	mode, full := plan.Mode, plan.Full
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
	// ds, in a checksum round, gives the differing blocks as the local
	// scan passes them; the data of the first goes out while the scan
	// reads the rest.
	var ds *diffStream
	if mode == RoundChecksum {
		blocks := g.Blocks()
		ds, err = m.startDiff(s, g, func(n uint64) { m.setProgress(2*blocks, n) })
		if err != nil {
			return st, err
		}
		defer ds.wait()
		remote = ds.remote
		st.Scanned = blocks
		m.log.Debug("mirror sums received", "round", round, "after", time.Since(start))
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
		if s.compress && !d.Zero && len(d.Bytes) >= 512 {
			z, err := s.codec.compress(d.Bytes)
			if err != nil {
				return err
			}
			if z != nil {
				d.Bytes, d.Compressed = z, true
			}
		}
		return s.fc.writeData(d)
	}
	// sendPieces sends the records the planner chose for block b; sub-block
	// records are followed by the block's sum, so that the target knows it
	// without reading the block back.
	sendPieces := func(b uint64, p []byte, pieces []Piece) error {
		for _, pc := range pieces {
			d := dataMsg{Block: b, Sub: pc.Sub, Zero: pc.Zero}
			if !pc.Zero {
				d.Bytes = p
				if pc.Sub != wholeBlock {
					d.Bytes = p[int(pc.Sub)*FineSize : min((int(pc.Sub)+1)*FineSize, len(p))]
				}
			}
			if err := send(d); err != nil {
				return err
			}
		}
		if s.sums && len(pieces) > 0 && pieces[0].Sub != wholeBlock {
			return s.fc.write(msgBlockSum, encodeBlockSum(blockSumMsg{Block: b, Sum: m.cfg.Hash.Sum(p)}))
		}
		return nil
	}
	zs := zeroSums{h: m.cfg.Hash}
	targetZero := func(b uint64, n int) bool {
		return b < uint64(len(remote)) && remote[b] == zs.of(n)
	}
	// One buffer: a block is read when it is sent, so memory does not
	// grow with the batches in flight. A full round reads the device in
	// order, readAhead bytes at a time (a system call per 16 blocks: on
	// the primary each one that follows a wait for the line also wakes
	// the Go runtime's monitor thread); other rounds read the block.
	bufSize := g.BlockSize
	if full {
		bufSize = max(g.BlockSize, readAhead/g.BlockSize*g.BlockSize)
	}
	buf := make([]byte, bufSize)
	var bufOff, bufLen int64 // the device bytes buf holds
	read := func(b uint64) ([]byte, error) {
		off, n := g.Span(b)
		if off >= bufOff && off+int64(n) <= bufOff+bufLen {
			return buf[off-bufOff : off-bufOff+int64(n)], nil
		}
		k := int64(n)
		if full {
			k = min(int64(len(buf)), g.Size-off)
		}
		bufOff, bufLen = off, 0
		if _, err := m.dev.ReadAt(buf[:k], off); err != nil {
			return nil, m.abort(s, err)
		}
		bufLen = k
		return buf[:n], nil
	}
	var sent uint64 // differing blocks handled, for the progress
	step := func() {
		sent++
		if ds != nil {
			m.setProgress(total, g.Blocks()+ds.next)
			return
		}
		m.setProgress(total, base+sent*(total-base)/max(1, uint64(len(diff))))
	}
	// prepare sends the blocks of a batch that need no fine sums (a full
	// round streams every block; a block the target holds as zeros goes
	// at once) and asks for the fine sums of the others, which it returns.
	prepare := func(blocks []uint64) ([]uint64, error) {
		var need []uint64
		for _, b := range blocks {
			_, n := g.Span(b)
			if !full && !targetZero(b, n) {
				need = append(need, b)
				continue
			}
			p, err := read(b)
			if err != nil {
				return nil, err
			}
			var pieces []Piece
			if full {
				localSums[b] = m.cfg.Hash.Sum(p)
				pieces = PlanStream(p)
			} else {
				pieces, _ = PlanBlock(p, true)
			}
			if err := sendPieces(b, p, pieces); err != nil {
				return nil, err
			}
			step()
		}
		if len(need) > 0 {
			if err := s.fc.write(msgFineReq, encodeBlocks(need)); err != nil {
				return nil, err
			}
		}
		return need, s.fc.flush()
	}
	finish := func(need []uint64) error {
		if len(need) == 0 {
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
		if len(es) != len(need) {
			return fmt.Errorf("sdcard: %d fine entries for %d blocks", len(es), len(need))
		}
		for k, e := range es {
			if e.Block != need[k] {
				return fmt.Errorf("sdcard: fine entry for block %d, expected %d", e.Block, need[k])
			}
			p, err := read(e.Block)
			if err != nil {
				return err
			}
			step()
			if err := sendPieces(e.Block, p, PlanSubs(m.cfg.Hash, p, e.Sums)); err != nil {
				return err
			}
		}
		return nil
	}
	// Tell the target how much it will surely receive (whole blocks onto
	// zeros, a total that grows with the batches), so that a round that
	// cannot fit its journal goes in place before it journals more.
	var sure uint64
	tellSure := func(blocks []uint64) error {
		add := uint64(0)
		for _, b := range blocks {
			if _, n := g.Span(b); targetZero(b, n) {
				add += uint64(n)
			}
		}
		if add == 0 {
			return nil
		}
		sure += add
		return s.fc.write(msgRoundSize, binary.LittleEndian.AppendUint64(nil, sure))
	}
	rest := diff
	nextBatch := func() ([]uint64, error) {
		if ds != nil {
			return ds.batch(fineBatch)
		}
		b := rest[:min(fineBatch, len(rest))]
		rest = rest[len(b):]
		return b, nil
	}
	// Two batches are in flight: the fine request of the next one goes
	// out before the data of the current one, so the link does not idle
	// while the target hashes.
	var inflight []uint64
	for {
		batch, err := nextBatch()
		if err != nil {
			return st, m.abort(s, err)
		}
		if len(batch) == 0 {
			break
		}
		if err := tellSure(batch); err != nil {
			return st, err
		}
		need, err := prepare(batch)
		if err != nil {
			return st, err
		}
		if err := finish(inflight); err != nil {
			return st, err
		}
		inflight = need
	}
	if err := finish(inflight); err != nil {
		return st, err
	}
	if ds != nil {
		if err := ds.wait(); err != nil {
			return st, m.abort(s, err)
		}
		localSums = ds.local
		st.Blocks = ds.count
		m.mu.Lock()
		m.behind = st.Blocks
		m.mu.Unlock()
		m.log.Debug("mirror sums compared", "round", round, "differing", st.Blocks, "after", time.Since(start))
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

// abort tells the peer the round is abandoned and returns cause.
func (m *Mirror) abort(s *sess, cause error) error {
	if err := s.fc.write(msgAbort, []byte(cause.Error())); err == nil {
		s.fc.flush()
	}
	return cause
}
