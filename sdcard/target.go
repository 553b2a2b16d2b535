package sdcard

// The target side of a round: the secondary journals, commits and applies.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

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
	var direct *directStream         // the in-place stream of an initial sync, when it bypasses the page cache
	touched := NewBitmap(g.Blocks()) // blocks the round writes
	post := newPostSums(m.cfg.Hash, g)
	var ft *fineTrack
	if m.fine != nil {
		ft = newFineTrack(m.fine, m.cfg.Hash)
		defer m.fine.flush()
	}
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
	if local.Current == 0 && local.Data == DataInconsistent {
		// This node never held data: the journal would protect nothing,
		// so the round (an initial sync) goes straight to the device; the
		// node stays inconsistent until the round completes.
		if err := m.markInconsistent(); err != nil {
			return m.abort(s, err)
		}
		inPlace = true
		// Whole blocks stream in without a pause until RoundEnd.
		if lc := bulkReader(s.conn); lc != nil && !m.cfg.NoRcvLowat {
			lc.setBulk(true, !m.cfg.NoReadBuffer)
			defer lc.setBulk(false, false)
		}
		// They go to the device bypassing the page cache.
		if !m.cfg.NoDirect {
			if direct = directStreamFor(m.watch, g.BlockSize); direct != nil {
				// Data records are read into frames whose bytes are
				// aligned for O_DIRECT and written from there.
				pool := s.pool
				s.pool = direct.pool
				defer func() {
					s.pool = pool
					if cerr := direct.close(); cerr != nil && err == nil {
						err = m.abort(s, cerr)
					}
					m.directBytes.Add(uint64(direct.written.Load()))
				}()
			}
		}
	}
	var pre []Sum  // the device's sums before the round
	var buf []byte // for fine requests
	cached := -1   // rounds in a row the sum cache answered, -1: pre was read
	if rs.Mode == RoundChecksum {
		st.Scanned = g.Blocks()
		if c, n := m.cachedSums(g); c != nil {
			pre, cached = c, n
			m.cacheHits.Add(1)
			err = m.sendSumList(s, pre)
		} else {
			pre, err = m.sendSums(s, g, true)
		}
		if err != nil {
			return err
		}
		if err := s.fc.flush(); err != nil {
			return err
		}
		m.log.Debug("mirror sums sent", "round", rs.Round, "cached", cached >= 0, "after", time.Since(start))
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
			if buf == nil {
				buf = make([]byte, g.BlockSize)
			}
			if direct != nil { // what was written reads back
				if err := direct.drain(); err != nil {
					return m.abort(s, err)
				}
			}
			for _, b := range blocks {
				if b >= g.Blocks() {
					return fmt.Errorf("sdcard: fine request for block %d beyond %d", b, g.Blocks())
				}
			}
			// The fine-sum cache answers for a block whose content has the
			// coarse sum reported for it at the start of the round. The
			// others are read; those not in the page cache come from the
			// disk, all of the batch at once rather than one after the
			// other.
			for _, b := range blocks {
				var fs []Sum
				ok := false
				if m.fine != nil && b < uint64(len(pre)) {
					fs, ok = m.fine.get(b, pre[b], nil)
				}
				es = append(es, fineEntry{Block: b, Sums: fs})
				if !ok {
					off, n := g.Span(b)
					m.watch.prefetch(off, n)
				}
			}
			for i := range es {
				if es[i].Sums != nil {
					continue
				}
				off, n := g.Span(es[i].Block)
				if _, err := m.dev.ReadAt(buf[:n], off); err != nil {
					return m.abort(s, err)
				}
				es[i].Sums = FineSums(m.cfg.Hash, buf[:n])
				if m.fine != nil {
					m.fine.put(es[i].Block, m.cfg.Hash.Sum(buf[:n]), es[i].Sums)
				}
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
			if d.Compressed {
				if !s.zstd {
					return errors.New("sdcard: a compressed record on a connection that did not negotiate it")
				}
				if d.Bytes, err = s.codec.decompress(d.Bytes); err != nil {
					return m.abort(s, err)
				}
				d.Compressed = false
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
			post.record(d)
			if ft != nil {
				ft.record(g, d, post.sums[d.Block])
			}
			if inPlace {
				var err error
				kept := false
				if direct != nil {
					off, n, _ := recordSpan(g, d)
					kept, err = direct.write(off, d.Bytes, d.Zero, n, f.p)
				} else {
					err = applyRecord(m.dev, g, d)
				}
				if !kept {
					s.release(f)
				}
				if err != nil {
					return m.abort(s, err)
				}
				continue
			}
			err = m.journal.Append(d)
			s.release(f)
			if err != nil {
				return m.abort(s, err)
			}
			if m.journal.Bytes() > m.cfg.JournalLimit {
				if err := m.goInPlace(g); err != nil {
					return m.abort(s, err)
				}
				inPlace = true
			}
		case msgBlockSum:
			if !s.sums {
				return errors.New("sdcard: a block sum on a connection that did not negotiate it")
			}
			bs, err := decodeBlockSum(f.p)
			s.release(f)
			if err != nil {
				return err
			}
			if bs.Block >= g.Blocks() {
				return fmt.Errorf("sdcard: block sum for block %d beyond %d", bs.Block, g.Blocks())
			}
			post.claim(bs.Block, bs.Sum)
			if ft != nil && bs.Block < uint64(len(pre)) {
				ft.claim(bs.Block, bs.Sum, pre[bs.Block])
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
			if direct != nil { // the stream is on the device before its sync
				if err := direct.drain(); err != nil {
					return m.abort(s, err)
				}
			}
			// A round that started before this node took over or started a
			// generation of its own must not land: its data would replace
			// what the node wrote since (and its generation the new one).
			// commitMu keeps NewGeneration and SetPrimary out until the
			// commit is done, so the check holds through it.
			m.commitMu.Lock()
			m.mu.Lock()
			overtaken := m.primary || m.meta.Gen.Current != local.Current
			m.mu.Unlock()
			if overtaken {
				m.commitMu.Unlock()
				return m.abort(s, ErrRoundOvertaken)
			}
			committed = true
			t0 := time.Now()
			sums, err := m.commit(g, rs.Source.Gen, inPlace, pre, touched, post)
			m.commitMu.Unlock()
			if err != nil {
				return m.abort(s, err)
			}
			m.log.Debug("mirror round committed", "round", rs.Round, "in-place", inPlace, "commit", time.Since(t0))
			if err := s.fc.write(msgCommitted, binary.LittleEndian.AppendUint64(nil, rs.Round)); err != nil {
				return err
			}
			if err := s.fc.flush(); err != nil {
				return err
			}
			// The round is durable and claimed: the journal's truncation
			// and the sum cache follow the answer. A journal that stays
			// committed is applied again before the next round or at the
			// next start (the same records onto the same blocks).
			m.saveSums(g, rs.Source.Gen.Current, sums, cached+1)
			if err := m.journal.Reset(); err != nil {
				m.log.Warn("mirror cannot empty the journal after a round; it is applied again before the next", "reason", err)
			}
			return nil
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
func (m *Mirror) commit(g Geometry, src GenInfo, inPlace bool, pre []Sum, touched *Bitmap, post *postSums) ([]Sum, error) {
	gen := GenInfo{Current: src.Current, History: src.History, Data: DataUpToDate}
	// The digest of the device as the round leaves it reads the blocks
	// the round changed in part; it runs while the device's fsync waits
	// for the disk (the content is written by then).
	var base Sum
	var sums []Sum
	var ok bool
	done := make(chan struct{})
	started := false
	startBase := func() {
		if !started {
			started = true
			go func() {
				defer close(done)
				base, sums, ok = m.targetBase(g, pre, touched, post)
			}()
		}
	}
	wait := func() {
		if started {
			<-done
		}
	}
	t0 := time.Now()
	var tJournal, tMark, tApply time.Duration
	if inPlace {
		startBase()
		err := m.dev.Sync()
		wait()
		if err != nil {
			return nil, err
		}
	} else {
		if err := m.journal.Commit(gen); err != nil {
			return nil, err
		}
		tJournal = time.Since(t0)
		if err := m.markInconsistent(); err != nil {
			return nil, err
		}
		tMark = time.Since(t0) - tJournal
		if m.pacer != nil {
			m.pacer.SetWriteback(ApplyWritebackEvery)
		}
		n, jg, err := m.journal.Apply(syncHook{m.dev, startBase}, g, true)
		if m.pacer != nil {
			m.pacer.SetWriteback(WritebackEvery)
		}
		wait()
		if err != nil {
			return nil, err
		}
		// What was applied must be the round just committed: a journal
		// that reads back without its commit record (or with another
		// round's) applied nothing of it, and the device is not the new
		// generation. It stays inconsistent, the journal kept.
		if jg == nil || jg.Current != gen.Current || n != m.journal.Records() {
			return nil, fmt.Errorf("sdcard: the journal read back does not hold the round just committed (%d of %d records, commit record found: %v)",
				n, m.journal.Records(), jg != nil)
		}
		startBase() // when Apply had nothing to sync
		wait()
	}
	tApply = time.Since(t0) - tJournal - tMark
	m.mu.Lock()
	m.meta.Gen = gen
	m.meta.BitmapValid = false
	m.meta.Dirty.Clear()
	m.meta.BaseGen, m.meta.BaseSum = 0, Sum{}
	if ok {
		m.meta.BaseGen, m.meta.BaseSum = gen.Current, base
	}
	m.peer.Gen = gen
	t1 := time.Now()
	err := m.meta.Save()
	m.mu.Unlock()
	m.log.Debug("mirror commit", "journal", tJournal, "mark", tMark, "apply", tApply, "meta", time.Since(t1))
	if err != nil || !ok {
		return nil, err
	}
	return sums, nil
}

// syncHook calls before when its device is asked to sync.
type syncHook struct {
	BlockDevice
	before func()
}

func (d syncHook) Sync() error {
	d.before()
	return d.BlockDevice.Sync()
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
	_, applied, err := m.journal.Apply(m.dev, m.geom, true)
	if err != nil {
		return err
	}
	if applied == nil || applied.Current != gen.Current {
		return fmt.Errorf("sdcard: the committed journal of generation %016x did not read back whole", gen.Current)
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

// targetBase is the digest of the device after a received round, and
// its block sums when they cover g: per block the sum from the round's
// records when they rewrote it whole, else the sum sent before the round
// when the round did not touch it, else the block read back and hashed.
func (m *Mirror) targetBase(g Geometry, pre []Sum, touched *Bitmap, post *postSums) (Sum, []Sum, bool) {
	if g.Size != m.geom.Size || (pre != nil && uint64(len(pre)) != m.geom.Blocks()) {
		sums, err := m.sums(m.geom, nil)
		if err != nil {
			m.log.Warn("mirror cannot scan the device after a round", "reason", err)
			return Sum{}, nil, false
		}
		return Digest(m.cfg.Hash, sums), nil, true
	}
	post.end()
	sums := make([]Sum, g.Blocks())
	var buf []byte
	for b := range g.Blocks() {
		switch {
		case post.known.Get(b):
			sums[b] = post.sums[b]
		case pre != nil && !touched.Get(b):
			sums[b] = pre[b]
		default:
			if buf == nil {
				buf = make([]byte, g.BlockSize)
			}
			off, n := g.Span(b)
			if _, err := m.dev.ReadAt(buf[:n], off); err != nil {
				m.log.Warn("mirror cannot read the device after a round", "reason", err)
				return Sum{}, nil, false
			}
			sums[b] = m.cfg.Hash.Sum(buf[:n])
		}
	}
	return Digest(m.cfg.Hash, sums), sums, true
}

// postSums follows a round's records and keeps the sum of every block
// they rewrite whole: one whole-block record, or its sub-blocks in order
// from the first to the last (the source sends a block's records
// together and in order). Any other record leaves its block unknown.
type postSums struct {
	h     HashKind
	g     Geometry
	zs    zeroSums
	sums  []Sum
	known *Bitmap
	hs    hasher
	cur   uint64 // the block being assembled from sub-blocks
	next  int    // its next sub-block; -1 when none is under way
}

func newPostSums(h HashKind, g Geometry) *postSums {
	return &postSums{h: h, g: g, zs: zeroSums{h: h}, sums: make([]Sum, g.Blocks()), known: NewBitmap(g.Blocks()), next: -1}
}

// record notes one valid record (recordSpan accepted it).
func (p *postSums) record(d dataMsg) {
	if p.next >= 0 && d.Block != p.cur {
		p.end()
	}
	_, n := p.g.Span(d.Block)
	switch {
	case d.Sub == wholeBlock && d.Zero:
		p.next = -1
		p.sums[d.Block] = p.zs.of(n)
		p.known.Set(d.Block)
	case d.Sub == wholeBlock:
		p.next = -1
		p.sums[d.Block] = p.h.Sum(d.Bytes)
		p.known.Set(d.Block)
	case int(d.Sub) == 0 || (p.next >= 0 && int(d.Sub) == p.next):
		if d.Sub == 0 {
			if p.hs == nil {
				p.hs = p.h.newHasher()
			}
			p.hs.Reset()
			p.cur, p.next = d.Block, 0
		}
		p.known.Unset(d.Block)
		if d.Zero {
			writeZeros(p.hs, min(FineSize, n-int(d.Sub)*FineSize))
		} else {
			p.hs.Write(d.Bytes)
		}
		p.next++
		if p.next*FineSize >= n {
			p.sums[d.Block] = p.hs.sum()
			p.known.Set(d.Block)
			p.next = -1
		}
	default:
		p.next = -1
		p.known.Unset(d.Block)
	}
}

// claim notes the source's sum of block b after the records it sent for
// it (blockSumMsg): the block holds that content once they are applied.
func (p *postSums) claim(b uint64, s Sum) {
	if p.next >= 0 && p.cur == b {
		p.next = -1
	}
	p.sums[b] = s
	p.known.Set(b)
}

// end gives up a block whose sub-blocks stopped before its last.
func (p *postSums) end() {
	if p.next >= 0 {
		p.known.Unset(p.cur)
		p.next = -1
	}
}

// ErrRoundOvertaken: a received round was not committed because this node
// became primary or started a new generation while it was under way.
var ErrRoundOvertaken = errors.New("sdcard: the round was overtaken by a takeover or a new generation")
