package sdcard

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"
)

// errNotStarted marks a round that failed before anything was sent.
var errNotStarted = errors.New("sdcard: round not started")

// errReplaced ends a session when a newer connection from the peer arrives.
var errReplaced = errors.New("sdcard: connection replaced")

const (
	scanBuf   = 256 << 10 // bytes read at once by a sum scan
	hashBatch = 1024      // coarse sums per frame
	fineBatch = 64        // blocks per fine-hash request
)

type frame struct {
	t   msgType
	p   []byte
	err error
}

// sess is one connection's state, owned by the Run goroutine.
type sess struct {
	fc *frameConn
	in chan frame
	// conn is the connection under fc. During a round this node receives,
	// the session goroutine reads the frames itself (direct), without the
	// hand-off to and from the reader goroutine for every frame; the
	// reader goroutine stops after it delivers a RoundStart and waits on
	// resume.
	conn   net.Conn
	direct bool
	resume chan struct{}
	ctx    context.Context
	pool   *bufPool
	// zstd: the peer negotiated alpnCompressed (it reads compressed
	// records and may send them); compress: this node sends them.
	zstd, compress bool
	codec          codec
	// sums: the peer negotiated alpnSums (it reads blockSumMsg).
	sums bool
}

// release gives a frame's buffer back once nothing refers to it.
func (s *sess) release(f frame) { s.pool.put(f.p) }

// framesAhead is how many received frames wait for the session
// goroutine; with the one being read and the one being handled it bounds
// the frame buffers of a connection.
const framesAhead = 4

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
	}{c, newLimitWriter(ctx, c, m.cfg.BandwidthLimit)}
	if !m.cfg.NoGather {
		rw.Writer = newLimitWriter(ctx, newGatherWriter(c, c), m.cfg.BandwidthLimit)
	}
	s := &sess{fc: newFrameConn(rw), in: make(chan frame, framesAhead), ctx: ctx,
		conn: c, resume: make(chan struct{}),
		pool:  newBufPool(dataHeader+m.geom.BlockSize, framesAhead+2),
		codec: codec{block: m.geom.BlockSize, level: zstd.EncoderLevel(m.cfg.ZstdLevel)}}
	if tc, ok := c.(*tls.Conn); ok {
		switch tc.ConnectionState().NegotiatedProtocol {
		case alpnSums:
			s.sums = true
			fallthrough
		case alpnCompressed:
			s.zstd = true
			s.compress = m.cfg.Compression == CompressionZstd
		}
	}
	defer s.codec.close()
	go func() {
		for {
			t, p, err := s.fc.readFrame(s.pool)
			f := frame{t: t, p: p, err: err}
			select {
			case s.in <- f:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
			if t == msgRoundStart { // the session goroutine reads the round
				select {
				case <-s.resume:
				case <-ctx.Done():
					return
				}
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
	m.log.Info("mirror connected", "peer", c.RemoteAddr().String(), "peer-reads-zstd", s.zstd, "compress", s.compress)
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
		s.direct = true
		defer s.resumeReader()
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
	case msgBusy, msgHashes, msgHashesEnd, msgFineHashes, msgCommitted, msgAbort, msgRoundSize, msgBlockSum:
		m.log.Debug("mirror ignores a stray frame", "type", f.t)
		return nil
	}
	return fmt.Errorf("sdcard: unexpected %v", f.t)
}

// resumeReader ends the direct reading of a round: the reader goroutine
// reads the frames again.
func (s *sess) resumeReader() {
	s.direct = false
	_ = s.conn.SetReadDeadline(time.Time{})
	select {
	case s.resume <- struct{}{}:
	case <-s.ctx.Done():
	}
}

// errNoAnswer is a peer that sent no frame within the reply timeout.
var errNoAnswer = errors.New("sdcard: peer did not answer in time")

// next waits for the next frame.
func (m *Mirror) next(s *sess, timeout time.Duration) (frame, error) {
	if s.direct {
		_ = s.conn.SetReadDeadline(time.Now().Add(timeout))
		t, p, err := s.fc.readFrame(s.pool)
		switch {
		case err == nil:
			return frame{t: t, p: p}, nil
		case s.ctx.Err() != nil:
			return frame{}, s.ctx.Err()
		case errors.Is(err, os.ErrDeadlineExceeded):
			return frame{}, errNoAnswer
		}
		return frame{}, err
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case f := <-s.in:
		if f.err != nil {
			return f, f.err
		}
		return f, nil
	case <-t.C:
		return frame{}, errNoAnswer
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
			if f.t == msgRoundStart && !s.direct { // the reader goroutine stopped after it
				s.resumeReader()
			}
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

// sums computes the coarse sum of every block of g. Up to scanWorkers
// goroutines read it (each its own stretch of scanBuf bytes at a time):
// the scan is a copy from the page cache and a hash, bound by the CPU,
// and the other end may answer from its sum cache meanwhile. each, when
// set, is called (in order, from the workers) with the number of leading
// blocks whose sums are final in the returned slice's backing array,
// which is allocated first and passed to into when set.
func (m *Mirror) sums(g Geometry, each func(prefix uint64)) ([]Sum, error) {
	return m.sumsInto(make([]Sum, g.Blocks()), g, each)
}

func (m *Mirror) sumsInto(out []Sum, g Geometry, each func(prefix uint64)) ([]Sum, error) {
	n := g.Blocks()
	per := uint64(max(1, scanBuf/g.BlockSize))
	chunks := (n + per - 1) / per
	workers := min(scanWorkers, runtime.GOMAXPROCS(0), int(chunks))
	var next atomic.Uint64
	var mu sync.Mutex
	finished := make([]bool, chunks) // under mu
	prefix := uint64(0)              // chunks, under mu
	errs := make(chan error, workers)
	for range workers {
		go func() {
			buf := make([]byte, int(per)*g.BlockSize)
			for {
				c := next.Add(1) - 1
				if c >= chunks {
					errs <- nil
					return
				}
				i := c * per
				off, _ := g.Span(i)
				ln := int(min(int64(len(buf)), g.Size-off))
				if _, err := m.dev.ReadAt(buf[:ln], off); err != nil {
					next.Store(chunks) // the others stop too
					errs <- err
					return
				}
				k := i
				for o := 0; o < ln; o += g.BlockSize {
					out[k] = m.cfg.Hash.Sum(buf[o:min(o+g.BlockSize, ln)])
					k++
				}
				mu.Lock()
				finished[c] = true
				moved := false
				for prefix < chunks && finished[prefix] {
					prefix++
					moved = true
				}
				if moved && each != nil {
					each(min(prefix*per, n))
				}
				mu.Unlock()
			}
		}()
	}
	var err error
	for range workers {
		if e := <-errs; e != nil && err == nil {
			err = e
		}
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

// scanWorkers bounds the goroutines of a sum scan.
const scanWorkers = 2

// sendSums streams the coarse sums of g, then HashesEnd. With keep it
// also returns them.
func (m *Mirror) sendSums(s *sess, g Geometry, keep bool) ([]Sum, error) {
	var kept []Sum
	n := g.Blocks()
	per := max(1, scanBuf/g.BlockSize)
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

// sendSumList streams sums (of every block of the round's geometry, from
// the sum cache), then HashesEnd.
func (m *Mirror) sendSumList(s *sess, sums []Sum) error {
	for first := 0; first < len(sums); first += hashBatch {
		batch := sums[first:min(first+hashBatch, len(sums))]
		if err := s.fc.write(msgHashes, encodeHashes(hashesMsg{First: uint64(first), Sums: batch})); err != nil {
			return err
		}
	}
	return s.fc.write(msgHashesEnd, nil)
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

// diffStream compares the local scan, still running, with the peer's
// sums, all received: the differing blocks come out in order as the scan
// passes them, so that the fine requests and data of a round go out while
// the rest of the device is read.
type diffStream struct {
	local, remote []Sum
	mark          atomic.Uint64 // leading blocks of local that are final
	wake          chan struct{} // the mark moved or the scan ended
	end           chan error    // the scan's result, once
	ended         bool
	next          uint64 // the next block to compare
	count         uint64 // differing blocks so far
}

// startDiff starts the local scan of g and receives the peer's sums.
func (m *Mirror) startDiff(s *sess, g Geometry, progress func(uint64)) (*diffStream, error) {
	d := &diffStream{local: make([]Sum, g.Blocks()), wake: make(chan struct{}, 1), end: make(chan error, 1)}
	go func() {
		_, err := m.sumsInto(d.local, g, func(n uint64) {
			d.mark.Store(n)
			select {
			case d.wake <- struct{}{}:
			default:
			}
		})
		d.end <- err
	}()
	remote, err := m.recvSums(s, func(n uint64) {
		if progress != nil {
			progress(min(n, d.mark.Load()))
		}
	})
	if err != nil {
		d.wait()
		return nil, err
	}
	d.remote = remote
	return d, nil
}

// wait waits for the end of the scan.
func (d *diffStream) wait() error {
	if d.ended {
		return nil
	}
	d.ended = true
	return <-d.end
}

// batch returns up to max differing blocks past the last batch, waiting
// for the scan as needed; none when every block was compared. A block the
// peer sent no sum for (its device is shorter) differs.
func (d *diffStream) batch(max int) ([]uint64, error) {
	var out []uint64
	n := uint64(len(d.local))
	for len(out) < max && d.next < n {
		w := d.mark.Load()
		for ; d.next < w && len(out) < max; d.next++ {
			if b := d.next; b >= uint64(len(d.remote)) || d.local[b] != d.remote[b] {
				out = append(out, b)
			}
		}
		if len(out) == max || d.next >= n || d.next < w {
			break
		}
		select {
		case <-d.wake:
		case err := <-d.end:
			d.ended = true
			if err != nil {
				return nil, err
			}
			d.mark.Store(n) // the scan's writes happen before its end
		}
	}
	d.count += uint64(len(out))
	return out, nil
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
