package online

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"

	"github.com/pairguard/pairguard/sdcard"
)

// Secondary applies the primary's stream to the local device, in order.
// It is the only writer of the device while it runs: nothing else on the
// node exports it.
type Secondary struct {
	dev  sdcard.BlockDevice
	log  *slog.Logger
	busy sync.Mutex // one primary at a time

	mu   sync.Mutex
	meta *sdcard.Meta
	// applied counts the records applied, for status and tests.
	applied  uint64
	attached bool
}

// Attached reports whether a primary's stream is being applied (from its
// Start on).
func (s *Secondary) Attached() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attached
}

// OpenSecondary loads the metadata in store for dev.
func OpenSecondary(dev sdcard.BlockDevice, store sdcard.Store, log *slog.Logger) (*Secondary, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	meta, err := sdcard.LoadMeta(store, sdcard.Geometry{Size: dev.Size(), BlockSize: sdcard.DefaultBlockSize})
	if err != nil {
		return nil, err
	}
	return &Secondary{dev: dev, log: log, meta: meta}, nil
}

// Gen returns the node's generations and data state.
func (s *Secondary) Gen() sdcard.GenInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.meta.Gen
	g.History = slices.Clone(g.History)
	return g
}

// Applied is the number of records applied so far.
func (s *Secondary) Applied() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.applied
}

// Run accepts primaries on l, one at a time, until ctx ends; it returns
// once the streams it served have stopped.
func (s *Secondary) Run(ctx context.Context, l net.Listener) error {
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		wg.Go(func() {
			err := s.Serve(ctx, c)
			s.log.Info("primary gone", "peer", c.RemoteAddr().String(), "reason", err)
		})
	}
}

// Serve runs one primary's stream on c until it ends.
func (s *Secondary) Serve(ctx context.Context, c net.Conn) error {
	defer c.Close()
	if !s.busy.TryLock() {
		return errors.New("online: another primary is attached")
	}
	// Attached goes false only after busy is free: a caller that waited
	// for it can attach the next primary.
	defer func() {
		s.mu.Lock()
		s.attached = false
		s.mu.Unlock()
	}()
	defer s.busy.Unlock()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()

	if err := writeFrame(c, header{typ: msgHello}, appendGen(nil, s.Gen())); err != nil {
		return err
	}
	br := bufio.NewReaderSize(c, 256<<10)
	buf := make([]byte, headerLen)
	h, err := readHeader(br, buf)
	if err != nil {
		return err
	}
	if h.typ != msgStart {
		return fmt.Errorf("%w: expected start, got type %d", ErrProtocol, h.typ)
	}
	b, err := readPayload(br, h)
	if err != nil {
		return err
	}
	pgen, err := decodeGen(b)
	if err != nil {
		return err
	}
	// Until the resync's Done the device is a mix: never primary.
	s.mu.Lock()
	s.attached = true
	s.meta.Gen.Data = sdcard.DataInconsistent
	s.meta.BitmapValid = false
	err = s.meta.Save()
	s.mu.Unlock()
	if err != nil {
		return err
	}

	// Acknowledgements are written here, in order, and flushed unless
	// the next record is already here in full (applying it is quick):
	// no hand-over to another goroutine on a write's round trip.
	aw := bufio.NewWriter(c)
	ackBuf := make([]byte, 0, headerLen)

	data := make([]byte, 0, 1<<20)
	var want uint64 = 1
	for {
		h, err := readHeader(br, buf)
		if err != nil {
			return err
		}
		if h.seq != want {
			return fmt.Errorf("%w: record %d, expected %d", ErrProtocol, h.seq, want)
		}
		want++
		var reply []byte
		switch h.typ {
		case msgWrite:
			if cap(data) < int(h.length) {
				data = make([]byte, h.length)
			}
			data = data[:h.length]
			if _, err := io.ReadFull(br, data); err != nil {
				return err
			}
			if _, err := s.dev.WriteAt(data, int64(h.off)); err != nil {
				return err
			}
		case msgZero:
			if int64(h.off)+int64(h.length) > s.dev.Size() {
				return fmt.Errorf("%w: zero beyond the device", ErrProtocol)
			}
			if err := writeZeroes(s.dev, int64(h.off), int64(h.length)); err != nil {
				return err
			}
		case msgFlush:
			if err := s.dev.Sync(); err != nil {
				return err
			}
		case msgDone:
			if err := s.dev.Sync(); err != nil {
				return err
			}
			s.mu.Lock()
			s.meta.Gen = sdcard.GenInfo{Current: pgen.Current, History: slices.Clone(pgen.History), Data: sdcard.DataUpToDate}
			err := s.meta.Save()
			s.mu.Unlock()
			if err != nil {
				return err
			}
			s.log.Info("in sync with the primary", "gen", pgen.String())
		case msgResync:
			s.mu.Lock()
			s.meta.Gen.Data = sdcard.DataInconsistent
			s.meta.BitmapValid = false
			err := s.meta.Save()
			s.mu.Unlock()
			if err != nil {
				return err
			}
			s.log.Info("the primary is ahead: inconsistent until it caught up")
		case msgVerify:
			sums, err := s.verifySums(h, data)
			if err != nil {
				return err
			}
			reply = sums
		default:
			return fmt.Errorf("%w: type %d from the primary", ErrProtocol, h.typ)
		}
		s.mu.Lock()
		s.applied++
		s.mu.Unlock()
		if _, err := aw.Write(header{typ: msgAck, seq: h.seq, length: uint32(len(reply))}.append(ackBuf[:0])); err != nil {
			return err
		}
		if _, err := aw.Write(reply); err != nil {
			return err
		}
		if !nextBuffered(br) {
			if err := aw.Flush(); err != nil {
				return err
			}
		}
	}
}

// nextBuffered reports whether the next record, header and payload, is
// already in br's buffer.
func nextBuffered(br *bufio.Reader) bool {
	b, err := br.Peek(min(headerLen, br.Buffered()))
	if err != nil || len(b) < headerLen {
		return false
	}
	n := headerLen
	if t := msgType(b[0]); t == msgWrite || t == msgStart {
		n += int(binary.LittleEndian.Uint32(b[4:]))
	}
	return br.Buffered() >= n
}

// verifySums answers a Verify: the sums of its blocks, read now (after
// every record before it was applied).
func (s *Secondary) verifySums(h header, buf []byte) ([]byte, error) {
	off, n := int64(h.off), int64(h.length)
	if off%VerifyBlock != 0 || n <= 0 || n > maxVerify || off+n > s.dev.Size() ||
		(n%VerifyBlock != 0 && off+n != s.dev.Size()) {
		return nil, fmt.Errorf("%w: verify of %d bytes at %d", ErrProtocol, n, off)
	}
	if int64(cap(buf)) < n {
		buf = make([]byte, n)
	}
	if _, err := s.dev.ReadAt(buf[:n], off); err != nil {
		return nil, err
	}
	return appendSums(nil, buf[:n]), nil
}

// ErrNoSplitBrain: Resolve found nothing to resolve.
var ErrNoSplitBrain = errors.New("online: no split brain to resolve")

// Resolve ends a split brain on the secondary (`pairguard resolve`).
// keepLocal false discards this node's generation: it becomes outdated,
// so the primary's next attach is no longer refused and resyncs it in
// full. keepLocal true cannot be done here: a secondary's data is kept
// only by making the node primary (or by `resolve --keep-local` on the
// primary, which keeps the primary's). While a primary's stream is being
// applied there is no split brain and nothing is discarded.
func (s *Secondary) Resolve(keepLocal bool) (discarded sdcard.GenInfo, err error) {
	if keepLocal {
		return sdcard.GenInfo{}, errors.New("online: a secondary cannot keep its data against the primary: run resolve --discard-local here, or make this node primary first")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.attached {
		return sdcard.GenInfo{}, fmt.Errorf("%w: the primary's stream is attached", ErrNoSplitBrain)
	}
	old := s.meta.Gen
	g := sdcard.GenInfo{Data: sdcard.DataOutdated}
	if old.Current != 0 {
		g.History = append([]uint64{old.Current}, old.History...)
		if len(g.History) > sdcard.MaxHistory {
			g.History = g.History[:sdcard.MaxHistory]
		}
	}
	s.meta.Gen, s.meta.BitmapValid = g, false
	if err := s.meta.Save(); err != nil {
		s.meta.Gen = old
		return sdcard.GenInfo{}, err
	}
	s.log.Warn("split brain resolved: local generation discarded", "generation", old.String())
	return old, nil
}
