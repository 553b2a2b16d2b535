package sdcard

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
)

// testBufs returns directBufs buffers of directChunk bytes (the tests'
// fake writes need no alignment).
func testBufs() [][]byte {
	var out [][]byte
	for range directBufs {
		out = append(out, make([]byte, directChunk))
	}
	return out
}

type writeLog struct {
	mu   sync.Mutex
	dev  *MemDevice
	ops  [][2]int64 // offset, length
	fail error      // returned instead of writing
}

// writev is the direct write: the pieces joined.
func (l *writeLog) writev(iov [][]byte, off int64) (int, error) {
	return l.write(bytes.Join(iov, nil), off)
}

func (l *writeLog) write(p []byte, off int64) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fail != nil {
		return 0, l.fail
	}
	l.ops = append(l.ops, [2]int64{off, int64(len(p))})
	return l.dev.WriteAt(p, off)
}

// The stream gathers consecutive records into writes of up to
// directChunk bytes, writes zero records as zeros and the device's short
// last block with an ordinary write.
func TestDirectStreamGathers(t *testing.T) {
	const size = 8<<20 + 6144 // a short last block
	g := Geometry{Size: size, BlockSize: 64 << 10}
	want := NewMemDevice(size)
	fast := &writeLog{dev: NewMemDevice(size)}
	slow := &writeLog{dev: fast.dev}
	fast.dev.WriteAt(bytes.Repeat([]byte{0xee}, size), 0) // garbage a zero record must clear
	want.WriteAt(bytes.Repeat([]byte{0xee}, size), 0)
	s := newDirectStream(fast.writev, slow.write, testBufs(), nil, nil, nil)
	var syncs atomic.Int32
	s.sync = func() error { syncs.Add(1); return nil }
	s.syncEvery = 2 << 20
	r := rand.New(rand.NewPCG(1, 2))
	p := make([]byte, g.BlockSize)
	for b := range g.Blocks() {
		if b == 40 { // a gap: block 40 is not sent
			continue
		}
		d := dataMsg{Block: b, Sub: wholeBlock, Zero: b%7 == 3}
		off, n := g.Span(b)
		if d.Zero {
			want.WriteAt(make([]byte, n), off)
		} else {
			for i := range p[:n] {
				p[i] = byte(r.Uint32())
			}
			d.Bytes = p[:n]
			want.WriteAt(p[:n], off)
		}
		if _, err := s.write(off, d.Bytes, d.Zero, n, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(fast.dev.Bytes(), want.Bytes()) {
		t.Fatal("the device differs from the records")
	}
	for _, op := range fast.ops {
		if op[1] > directChunk || op[0]%directAlign != 0 || op[1]%directAlign != 0 {
			t.Errorf("direct write at %d of %d bytes", op[0], op[1])
		}
	}
	// 128 full blocks but one in two runs: 8 MiB in writes of directChunk.
	if len(fast.ops) > 8<<20/directChunk+1 {
		t.Errorf("%d direct writes for 8 MiB, want them gathered", len(fast.ops))
	}
	if len(slow.ops) != 1 || slow.ops[0][0] != 8<<20 || slow.ops[0][1] != 6144 {
		t.Errorf("ordinary writes %v, want only the short last block", slow.ops)
	}
	// A sync starts in the background every 2 MiB unless one still runs.
	if n := syncs.Load(); n < 1 || n > 4 {
		t.Errorf("%d background syncs for 8 MiB every 2 MiB", n)
	}
	if got := s.written.Load(); got != 8<<20-64<<10 {
		t.Errorf("written %d bytes with O_DIRECT, want %d", got, 8<<20-64<<10)
	}
}

// A file system that refuses O_DIRECT (EINVAL) gets ordinary writes; any
// other error fails the stream.
func TestDirectStreamFallback(t *testing.T) {
	const size = 4 << 20
	fast := &writeLog{dev: NewMemDevice(size), fail: syscall.EINVAL}
	slow := &writeLog{dev: fast.dev}
	s := newDirectStream(fast.writev, slow.write, testBufs(), nil, nil, nil)
	p := bytes.Repeat([]byte{7}, 64<<10)
	for off := int64(0); off < size; off += int64(len(p)) {
		if _, err := s.write(off, p, false, len(p), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(fast.dev.Bytes(), bytes.Repeat([]byte{7}, size)) {
		t.Fatal("fallback writes lost data")
	}
	if !s.fellBack.Load() || s.written.Load() != 0 || len(slow.ops) == 0 {
		t.Errorf("fell back %v, direct bytes %d, ordinary writes %d", s.fellBack.Load(), s.written.Load(), len(slow.ops))
	}

	eio := errors.New("input/output error")
	fast = &writeLog{dev: NewMemDevice(size), fail: eio}
	s = newDirectStream(fast.writev, slow.write, testBufs(), nil, nil, nil)
	var err error
	for off := int64(0); off < size && err == nil; off += int64(len(p)) {
		_, err = s.write(off, p, false, len(p), nil)
	}
	if err == nil {
		err = s.drain()
	}
	if !errors.Is(err, eio) {
		t.Errorf("stream error %v, want %v", err, eio)
	}
	if cerr := s.close(); !errors.Is(cerr, eio) {
		t.Errorf("close: %v", cerr)
	}
}

// An initial sync onto an image file goes with O_DIRECT where the file
// system takes it; the rounds after it (buffered reads and writes of the
// same file) see what it wrote.
func TestInitialSyncDirect(t *testing.T) {
	testInitialSyncDirect(t, randomDev(6<<20+6144, 3), nil)
}

// Compressed records are decompressed into a buffer the next record
// reuses: the stream copies them (before, it wrote them from there, and
// the image differed).
func TestInitialSyncDirectCompressed(t *testing.T) {
	testInitialSyncDirect(t, textDev(6<<20+6144), func(c *MirrorConfig) { c.Compression = CompressionZstd })
}

func testInitialSyncDirect(t *testing.T, src *MemDevice, mod func(*MirrorConfig)) {
	size := int(src.Size()) // a short last block, not aligned for O_DIRECT
	dir := t.TempDir()
	paths := [2]string{filepath.Join(dir, "a.img"), filepath.Join(dir, "b.img")}
	if err := os.WriteFile(paths[0], src.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(paths[1], bytes.Repeat([]byte{0x5a}, size), 0o600); err != nil {
		t.Fatal(err)
	}
	direct := true
	if f, err := openDirect(paths[1]); err != nil {
		direct = false
		t.Logf("no O_DIRECT here (%v): the ordinary writes are tested", err)
	} else {
		f.Close()
	}
	la, lb := freeAddrs(t)
	file := func(p string) func(*MirrorConfig) {
		return func(c *MirrorConfig) {
			c.Dev, c.Device = nil, p
			if mod != nil {
				mod(c)
			}
		}
	}
	a := newNode(t, nil, la, lb, file(paths[0]))
	b := newNode(t, nil, lb, la, file(paths[1]))
	if _, err := a.m.NewGeneration(1); err != nil {
		t.Fatal(err)
	}
	a.m.SetPrimary(true)
	a.start(t)
	b.start(t)
	same := func(k uint64) {
		t.Helper()
		waitRounds(t, b, k)
		x, _ := os.ReadFile(paths[0])
		y, _ := os.ReadFile(paths[1])
		if !bytes.Equal(x, y) {
			t.Fatalf("images differ after round %d", k)
		}
	}
	waitInSync(t, a, b)
	same(1)
	if got := b.m.directBytes.Load(); direct && got != uint64(size-6144) {
		t.Errorf("%d bytes written with O_DIRECT, want %d", got, size-6144)
	}
	f, err := os.OpenFile(paths[0], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{4096, 70 << 10, 3 << 20, int64(size) - 4096} {
		f.WriteAt(bytes.Repeat([]byte{9}, 4096), off)
	}
	f.Close()
	if _, err := a.m.SyncNow(t.Context()); err != nil {
		t.Fatal(err)
	}
	same(2)
}

// Records read into the pool's aligned frames are written from the
// frames, which the stream returns to the pool once written; records in
// other buffers are copied.
func TestDirectStreamFrames(t *testing.T) {
	const bs = 64 << 10
	const size = 4 << 20
	fast := &writeLog{dev: NewMemDevice(size)}
	pool, zeros, free := alignedPool(directFrames(bs), bs)
	s := newDirectStream(fast.writev, fast.write, testBufs(), pool, zeros, free)
	want := make([]byte, size)
	held, copies := 0, int64(0)
	for b := range int64(size / bs) {
		var frame []byte
		if b%5 == 4 {
			frame = make([]byte, dataHeader+bs) // not from the pool: copied
		} else {
			frame = pool.get(dataHeader + bs)
		}
		p := frame[dataHeader:]
		for i := range p {
			p[i] = byte(b*7 + int64(i)%251)
		}
		zero := b%9 == 8
		if !zero {
			copy(want[b*bs:], p)
		}
		kept, err := s.write(b*bs, p, zero, bs, frame)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case kept:
			held++
		case b%5 != 4:
			pool.put(frame) // the caller releases what the stream did not keep
		}
		if !zero && b%5 == 4 {
			copies += bs
		}
		if kept != (b%5 != 4 && !zero) {
			t.Errorf("block %d: kept %v", b, kept)
		}
	}
	// The session's own pool never takes a frame of the stream's, whose
	// memory is unmapped when the stream closes.
	own := newBufPool(dataHeader+bs, 4)
	f := pool.get(dataHeader + bs)
	own.put(f)
	if len(own.free) != 0 {
		t.Error("the session's pool took a frame of the stream's mapping")
	}
	pool.put(f)
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(fast.dev.Bytes(), want) {
		t.Fatal("the device differs from the records")
	}
	if got := len(pool.free); got != cap(pool.free) {
		t.Errorf("%d of %d frames back in the pool", got, cap(pool.free))
	}
	if c := s.copied.Load(); c != copies {
		t.Errorf("%d bytes copied, want %d (the records outside the pool)", c, copies)
	}
	if held == 0 || len(fast.ops) > size/directChunk {
		t.Errorf("%d records written from their frames in %d writes", held, len(fast.ops))
	}
}
