package sdcard

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
)

// The in-place stream of an initial sync bypasses the page cache: a node
// that never held data receives the whole device, block after block, and
// writing it through the page cache cost the receiver more CPU than
// anything else in its profile (the copy into fresh cache pages, their
// bookkeeping and their write-back). The stream gathers consecutive
// blocks into aligned buffers of directChunk bytes and a goroutine writes
// them with O_DIRECT while the next ones arrive. Where the file system
// refuses O_DIRECT (EINVAL, as tmpfs did before Linux 6.6) the stream
// falls back to the device's ordinary writes.

const (
	directChunk = 1 << 20 // bytes gathered per write
	directBufs  = 3       // buffers: one filling, the others being written
	// directAlign is the alignment of every O_DIRECT write (offset,
	// length, memory): 4096 covers devices with 4 KiB logical sectors.
	directAlign = 4096
	// directSyncEvery: after this many bytes a sync of the device starts
	// in the background (the writes go on meanwhile), so that the one
	// closing the round finds little left: the disk's cache and the
	// file system's allocations of what was written.
	directSyncEvery = 64 << 20
)

// directStream writes a round's records in place, gathered and with
// O_DIRECT where it can.
type directStream struct {
	// direct writes p at off bypassing the page cache; slow is the
	// device's ordinary write (fallback, unaligned pieces).
	direct, slow func(p []byte, off int64) (int, error)
	sync         func() error // of the device; nil: none in the background
	release      func()       // frees the buffers and the O_DIRECT file
	syncEvery    int64        // directSyncEvery
	since        int64        // bytes written since the last background sync started (writer goroutine)
	syncing      sync.WaitGroup
	busy         atomic.Bool // a background sync runs

	free chan []byte
	jobs chan directJob
	done chan struct{}
	wg   sync.WaitGroup // jobs not yet written

	mu  sync.Mutex
	err error

	cur []byte // the buffer being filled
	off int64  // device offset of cur[0]
	n   int    // bytes in cur

	// written: bytes written with O_DIRECT; fellBack: the file system
	// refused O_DIRECT and the stream uses ordinary writes (for tests
	// and the log).
	written  atomic.Int64
	fellBack atomic.Bool
}

type directJob struct {
	buf []byte // the whole buffer, returned to free
	n   int
	off int64
}

// newDirectStream starts a stream over the given writes with buffers of
// directChunk bytes, each aligned to directAlign.
func newDirectStream(direct, slow func([]byte, int64) (int, error), bufs [][]byte, release func()) *directStream {
	s := &directStream{direct: direct, slow: slow, release: release,
		free: make(chan []byte, len(bufs)), jobs: make(chan directJob, len(bufs)), done: make(chan struct{}),
		syncEvery: directSyncEvery}
	for _, b := range bufs[1:] {
		s.free <- b
	}
	s.cur = bufs[0]
	go s.run()
	return s
}

func (s *directStream) run() {
	defer close(s.done)
	for j := range s.jobs {
		if s.failed() == nil {
			if err := s.writeOut(j.buf[:j.n], j.off); err != nil {
				s.fail(err)
			}
			s.since += int64(j.n)
			if s.sync != nil && s.since >= s.syncEvery && !s.busy.Load() {
				s.since = 0
				s.busy.Store(true)
				s.syncing.Add(1)
				go func() {
					defer s.syncing.Done()
					if err := s.sync(); err != nil {
						s.fail(err)
					}
					s.busy.Store(false)
				}()
			}
		}
		s.free <- j.buf
		s.wg.Done()
	}
}

// writeOut writes one gathered piece: with O_DIRECT until the file
// system refuses it, then with ordinary writes.
func (s *directStream) writeOut(p []byte, off int64) error {
	if !s.fellBack.Load() {
		n, err := s.direct(p, off)
		if err == nil && n == len(p) {
			s.written.Add(int64(n))
			return nil
		}
		if !errors.Is(err, syscall.EINVAL) {
			if err == nil {
				err = fmt.Errorf("sdcard: short direct write at %d: %d of %d bytes", off, n, len(p))
			}
			return err
		}
		s.fellBack.Store(true)
	}
	_, err := s.slow(p, off)
	return err
}

func (s *directStream) fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
}

func (s *directStream) failed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// write places the record's bytes at off (n zero bytes when zero).
func (s *directStream) write(off int64, p []byte, zero bool, n int) error {
	if err := s.failed(); err != nil {
		return err
	}
	if off%directAlign != 0 || n%directAlign != 0 || n > len(s.cur) {
		// The device's short last block: an ordinary write, after the
		// gathered ones.
		if err := s.drain(); err != nil {
			return err
		}
		if zero {
			return applyZeros(writerFunc(s.slow), off, n)
		}
		_, err := s.slow(p, off)
		return err
	}
	if s.n > 0 && (off != s.off+int64(s.n) || s.n+n > len(s.cur)) {
		s.flush()
	}
	if s.n == 0 {
		s.off = off
	}
	if zero {
		clear(s.cur[s.n : s.n+n])
	} else {
		copy(s.cur[s.n:], p)
	}
	s.n += n
	if s.n == len(s.cur) {
		s.flush()
	}
	return nil
}

// flush hands the gathered bytes to the writer and takes a free buffer.
func (s *directStream) flush() {
	if s.n == 0 {
		return
	}
	s.wg.Add(1)
	s.jobs <- directJob{buf: s.cur, n: s.n, off: s.off}
	s.cur, s.n = <-s.free, 0
}

// drain writes everything gathered so far and waits for it.
func (s *directStream) drain() error {
	s.flush()
	s.wg.Wait()
	return s.failed()
}

// close drains the stream and releases it; the stream is unusable after.
func (s *directStream) close() error {
	err := s.drain()
	close(s.jobs)
	<-s.done
	s.syncing.Wait()
	if err == nil {
		err = s.failed()
	}
	if s.release != nil {
		s.release()
	}
	return err
}

type writerFunc func([]byte, int64) (int, error)

func (f writerFunc) WriteAt(p []byte, off int64) (int, error) { return f(p, off) }

// directStreamFor opens an O_DIRECT stream onto the device under dev,
// or returns nil when there is none (not a file or block device, or the
// platform or file system has no O_DIRECT). Errors of its writes are
// noted on w, as the device's own writes are.
func directStreamFor(w *watchedDevice) *directStream {
	d, ok := w.BlockDevice.(*Device)
	if !ok {
		return nil
	}
	f, err := openDirect(d.path)
	if err != nil {
		return nil
	}
	bufs, free, err := alignedBuffers(directBufs, directChunk)
	if err != nil {
		f.Close()
		return nil
	}
	direct := func(p []byte, off int64) (int, error) {
		n, err := f.WriteAt(p, off)
		if err != nil && !errors.Is(err, syscall.EINVAL) {
			err = w.note(fmt.Errorf("sdcard: write %s at %d: %w", d.path, off, err))
		}
		return n, err
	}
	s := newDirectStream(direct, w.WriteAt, bufs, func() {
		f.Close()
		free()
	})
	s.sync = func() error {
		if err := syncData(f); err != nil {
			return w.note(fmt.Errorf("sdcard: fsync %s: %w", d.path, err))
		}
		return nil
	}
	return s
}
