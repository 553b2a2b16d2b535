package sdcard

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"
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
	// directChunk is the bytes gathered per write: each write is handed to
	// the writer goroutine, and each hand-off costs thread wake-ups (1 MiB
	// against 512 KiB: 24k against 30k context switches of the receiver
	// per GiB, issue 15), while an SD card takes large aligned writes best.
	directChunk = 1 << 20
	directBufs  = 2 // staging buffers, and batches queued for the writer
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
// O_DIRECT where it can. A record whose bytes sit aligned in a frame
// buffer of the stream's pool is written from there (the frame is held
// until its write is done); any other is copied into a staging buffer.
type directStream struct {
	// direct writes the pieces of iov one after the other from off,
	// bypassing the page cache; slow is the device's ordinary write
	// (fallback, unaligned pieces).
	direct    func(iov [][]byte, off int64) (int, error)
	slow      func(p []byte, off int64) (int, error)
	sync      func() error // of the device; nil: none in the background
	release   func()       // frees the buffers and the O_DIRECT file
	syncEvery int64        // directSyncEvery
	since     int64        // bytes written since the last background sync started (writer goroutine)
	syncing   sync.WaitGroup
	busy      atomic.Bool // a background sync runs

	// pool holds frame buffers whose data records' bytes are aligned
	// (nil: every record is copied); zeros is an aligned run of zero
	// bytes for zero records.
	pool  *bufPool
	zeros []byte

	free chan []byte // staging buffers
	jobs chan directJob
	done chan struct{}
	wg   sync.WaitGroup // jobs not yet written

	mu  sync.Mutex
	err error

	// the batch being gathered: n bytes at off, as the pieces iov
	iov    [][]byte
	held   [][]byte // frames the pieces point into
	stage  []byte   // staging buffer, nil until a piece is copied
	staged int      // bytes of stage used
	// lastStaged: the last piece ends at stage[staged-1], so a copied
	// piece after it extends it
	lastStaged bool
	off        int64
	n          int

	// written: bytes written with O_DIRECT; fellBack: the file system
	// refused O_DIRECT and the stream uses ordinary writes; copied: bytes
	// that went through a staging buffer (for tests and the log).
	written  atomic.Int64
	copied   atomic.Int64
	fellBack atomic.Bool
}

type directJob struct {
	iov   [][]byte
	n     int
	off   int64
	stage []byte   // returned to free
	held  [][]byte // returned to the pool
}

// directMaxPieces bounds the pieces of one write.
const directMaxPieces = 64

// newDirectStream starts a stream over the given writes with staging
// buffers of directChunk bytes, each aligned to directAlign; pool and
// zeros as in directStream (may be nil).
func newDirectStream(direct func([][]byte, int64) (int, error), slow func([]byte, int64) (int, error),
	bufs [][]byte, pool *bufPool, zeros []byte, release func()) *directStream {
	s := &directStream{direct: direct, slow: slow, release: release, pool: pool, zeros: zeros,
		free: make(chan []byte, len(bufs)), jobs: make(chan directJob, len(bufs)), done: make(chan struct{}),
		syncEvery: directSyncEvery}
	for _, b := range bufs {
		s.free <- b
	}
	go s.run()
	return s
}

func (s *directStream) run() {
	defer close(s.done)
	for j := range s.jobs {
		if s.failed() == nil {
			if err := s.writeOut(j.iov, j.n, j.off); err != nil {
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
		if j.stage != nil {
			s.free <- j.stage
		}
		for _, h := range j.held {
			s.pool.put(h)
		}
		s.wg.Done()
	}
}

// writeOut writes one gathered batch: with O_DIRECT until the file
// system refuses it, then with ordinary writes.
func (s *directStream) writeOut(iov [][]byte, n int, off int64) error {
	if !s.fellBack.Load() {
		k, err := s.direct(iov, off)
		if err == nil && k == n {
			s.written.Add(int64(n))
			return nil
		}
		if !errors.Is(err, syscall.EINVAL) {
			if err == nil {
				err = fmt.Errorf("sdcard: short direct write at %d: %d of %d bytes", off, k, n)
			}
			return err
		}
		s.fellBack.Store(true)
	}
	for _, p := range iov {
		if _, err := s.slow(p, off); err != nil {
			return err
		}
		off += int64(len(p))
	}
	return nil
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

// inFrame reports whether p is the bytes of the data record read into
// frame (a decompressed record's bytes are elsewhere, in a buffer that
// the next record reuses).
func inFrame(p, frame []byte) bool {
	return len(p) > 0 && len(frame) == dataHeader+len(p) && unsafe.SliceData(p) == &frame[dataHeader]
}

// aligned reports whether p starts at a multiple of directAlign in memory.
func aligned(p []byte) bool {
	return len(p) > 0 && uintptr(unsafe.Pointer(unsafe.SliceData(p)))%directAlign == 0
}

// write places a record at off: p, or n zero bytes when zero. frame is
// the buffer p lies in, when it came from the stream's pool; kept says
// the stream holds it (and returns it to the pool) instead of the caller.
func (s *directStream) write(off int64, p []byte, zero bool, n int, frame []byte) (kept bool, err error) {
	if err := s.failed(); err != nil {
		return false, err
	}
	if off%directAlign != 0 || n%directAlign != 0 || n > directChunk {
		// The device's short last block: an ordinary write, after the
		// gathered ones.
		if err := s.drain(); err != nil {
			return false, err
		}
		if zero {
			return false, applyZeros(writerFunc(s.slow), off, n)
		}
		_, err := s.slow(p, off)
		return false, err
	}
	if s.n > 0 && (off != s.off+int64(s.n) || s.n+n > directChunk || len(s.iov) == directMaxPieces) {
		s.flush()
	}
	if s.n == 0 {
		s.off = off
	}
	staged := false // this piece went into the staging buffer
	switch {
	case zero && len(s.zeros) >= n:
		s.iov = append(s.iov, s.zeros[:n])
	case !zero && inFrame(p, frame) && s.pool != nil && aligned(p) && cap(frame) == s.pool.size:
		s.iov = append(s.iov, p)
		s.held = append(s.held, frame)
		kept = true
	default:
		staged = true
		if s.stage == nil {
			s.stage, s.staged = <-s.free, 0
		}
		piece := s.stage[s.staged : s.staged+n]
		if zero {
			clear(piece)
		} else {
			copy(piece, p)
		}
		s.copied.Add(int64(n))
		if k := len(s.iov) - 1; s.lastStaged {
			s.iov[k] = s.iov[k][:len(s.iov[k])+n] // the piece before it in stage
		} else {
			s.iov = append(s.iov, piece)
		}
		s.staged += n
	}
	s.lastStaged = staged
	s.n += n
	if s.n == directChunk {
		s.flush()
	}
	return kept, nil
}

// flush hands the gathered batch to the writer.
func (s *directStream) flush() {
	if s.n == 0 {
		return
	}
	s.wg.Add(1)
	s.jobs <- directJob{iov: s.iov, n: s.n, off: s.off, stage: s.stage, held: s.held}
	s.iov, s.held, s.stage, s.staged, s.n, s.lastStaged = nil, nil, nil, 0, 0, false
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

// alignedPool returns a pool of n frame buffers for data records of a
// block of blockSize, each placed so that the record's bytes (after the
// frame's dataHeader) start at a multiple of directAlign, an aligned run
// of blockSize zero bytes, and the function that frees them. The memory
// is mapped outside the Go heap, in huge pages where the kernel has them:
// an O_DIRECT write pins every page it writes from, and with 4 KiB pages
// the writes were a tenth of the receiver's CPU time in an initial sync,
// most of it the pinning (perf, issue 15; 4% with huge pages). So that no frame outlives the mapping, the
// frames have a capacity one byte larger than a frame of the session's
// own pool, which therefore never takes one (bufPool.put checks it);
// free may run once the stream has written and returned them all.
func alignedPool(n, blockSize int) (*bufPool, []byte, func()) {
	size := dataHeader + blockSize
	stride := blockSize + directAlign
	mem, free := hugeMemory((n+1)*stride + directAlign)
	base := alignOffset(mem)
	pool := newBufPool(size+1, n)
	for i := range n {
		at := base + i*stride + directAlign - dataHeader
		pool.put(mem[at : at+size : at+size+1])
	}
	z := base + n*stride
	return pool, mem[z : z+blockSize : z+blockSize], free
}

// alignedBuffers returns n buffers of size bytes (a multiple of
// directAlign), each starting at a multiple of directAlign, in memory
// from hugeMemory, and the function that frees them.
func alignedBuffers(n, size int) ([][]byte, func()) {
	mem, free := hugeMemory(n*size + directAlign)
	base := alignOffset(mem)
	bufs := make([][]byte, n)
	for i := range bufs {
		at := base + i*size
		bufs[i] = mem[at : at+size : at+size]
	}
	return bufs, free
}

// alignOffset returns the offset of the first byte of mem (at least
// directAlign long) that starts at a multiple of directAlign.
func alignOffset(mem []byte) int {
	return int(-uintptr(unsafe.Pointer(unsafe.SliceData(mem))) % directAlign)
}

type writerFunc func([]byte, int64) (int, error)

func (f writerFunc) WriteAt(p []byte, off int64) (int, error) { return f(p, off) }

// directStreamFor opens an O_DIRECT stream onto the device under w for
// blocks of blockSize, or returns nil when there is none (not a file or
// block device, or the platform or file system has no O_DIRECT). Errors
// of its writes are noted on w, as the device's own writes are.
func directStreamFor(w *watchedDevice, blockSize int) *directStream {
	d, ok := w.BlockDevice.(*Device)
	if !ok {
		return nil
	}
	f, err := openDirect(d.path)
	if err != nil {
		return nil
	}
	bufs, free := alignedBuffers(directBufs, directChunk)
	direct := func(iov [][]byte, off int64) (int, error) {
		n, err := writevAt(f, iov, off)
		if err != nil && !errors.Is(err, syscall.EINVAL) {
			err = w.note(fmt.Errorf("sdcard: write %s at %d: %w", d.path, off, err))
		}
		return n, err
	}
	pool, zeros, freeFrames := alignedPool(directFrames(blockSize), blockSize)
	s := newDirectStream(direct, w.WriteAt, bufs, pool, zeros, func() {
		f.Close()
		free()
		freeFrames()
	})
	s.sync = func() error {
		if err := syncData(f); err != nil {
			return w.note(fmt.Errorf("sdcard: fsync %s: %w", d.path, err))
		}
		return nil
	}
	return s
}

// directFrames is how many frame buffers a stream's pool holds: the
// frames of the batch being gathered and of the batches being written,
// and those being read.
func directFrames(blockSize int) int {
	return (directBufs+1)*max(1, directChunk/blockSize) + framesAhead + 2
}
