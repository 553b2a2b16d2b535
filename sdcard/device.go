package sdcard

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
)

// Sector is the alignment of every device read and write.
const Sector = 512

// FineSize is the size of the fine sub-blocks hashed inside a differing
// block. Block sizes are multiples of it.
const FineSize = 4096

// DefaultBlockSize is the block size when the config gives none.
const DefaultBlockSize = 64 << 10

// Errors from OpenDevice and the device methods. The daemon branches on
// them to raise an alarm and go to role fault instead of exiting.
var (
	ErrNoDevice  = errors.New("sdcard: device missing")
	ErrReadOnly  = errors.New("sdcard: device is read-only")
	ErrTooSmall  = errors.New("sdcard: device too small")
	ErrUnaligned = errors.New("sdcard: unaligned access")
	ErrBlockSize = errors.New("sdcard: invalid block size")
)

// BlockDevice is the datastore as the mirror sees it. Offsets and lengths
// are multiples of Sector, except that the last access may end at Size.
type BlockDevice interface {
	ReadAt(p []byte, off int64) (int, error)
	WriteAt(p []byte, off int64) (int, error)
	Size() int64
	Sync() error
	Close() error
}

// Geometry maps block indices to byte ranges of a device.
type Geometry struct {
	Size      int64
	BlockSize int
}

// CheckBlockSize reports whether bs is a usable block size: a multiple of
// FineSize between FineSize and 1 MiB.
func CheckBlockSize(bs int) error {
	if bs < FineSize || bs > 1<<20 || bs%FineSize != 0 {
		return fmt.Errorf("%w: %d (want a multiple of %d up to 1 MiB)", ErrBlockSize, bs, FineSize)
	}
	return nil
}

// Blocks is the number of blocks; the last one may be short.
func (g Geometry) Blocks() uint64 {
	return uint64((g.Size + int64(g.BlockSize) - 1) / int64(g.BlockSize))
}

// Span returns the byte offset and length of block i.
func (g Geometry) Span(i uint64) (off int64, n int) {
	off = int64(i) * int64(g.BlockSize)
	n = g.BlockSize
	if rest := g.Size - off; rest < int64(n) {
		n = int(max(rest, 0))
	}
	return off, n
}

// Subs is the number of fine sub-blocks in block i.
func (g Geometry) Subs(i uint64) int {
	_, n := g.Span(i)
	return (n + FineSize - 1) / FineSize
}

// Device is a datastore on a block device or an image file.
type Device struct {
	f    *os.File
	size int64
	path string

	// Write-back pacing (SetWriteback): the range written since the last
	// start of a write-back.
	wbMu     sync.Mutex
	wbEvery  int64
	wbLo     int64
	wbHi     int64
	wbAmount int64
}

// WritebackEvery is how many bytes a mirror writes to its device (or its
// journal) before it starts their write-back: a round's closing fsync
// then waits for the last few MiB only, not for everything the round
// wrote, and the dirty page cache stays small.
const WritebackEvery = 8 << 20

// ApplyWritebackEvery is the write-back pacing while a committed journal
// is applied: its fsync follows at once, so the disk had better start on
// the first writes while the rest are being made.
const ApplyWritebackEvery = 1 << 20

// writebackPacer is a device whose write-back pacing can change.
type writebackPacer interface {
	SetWriteback(n int64)
}

// SetWriteback makes the device start the write-back of what it was
// written every n bytes (0: never; the default).
func (d *Device) SetWriteback(n int64) {
	d.wbMu.Lock()
	d.wbEvery = n
	d.wbMu.Unlock()
}

// wrote notes a write of n bytes at off and starts a write-back when
// enough has gathered.
func (d *Device) wrote(off int64, n int) {
	d.wbMu.Lock()
	if d.wbEvery <= 0 {
		d.wbMu.Unlock()
		return
	}
	if d.wbAmount == 0 {
		d.wbLo, d.wbHi = off, off+int64(n)
	} else {
		d.wbLo, d.wbHi = min(d.wbLo, off), max(d.wbHi, off+int64(n))
	}
	d.wbAmount += int64(n)
	if d.wbAmount < d.wbEvery {
		d.wbMu.Unlock()
		return
	}
	lo, hi := d.wbLo, d.wbHi
	d.wbAmount = 0
	d.wbMu.Unlock()
	startWriteback(d.f, lo, hi-lo)
}

// OpenDevice opens path read-write. A missing path is ErrNoDevice, a
// read-only one ErrReadOnly, one smaller than a block ErrTooSmall.
func OpenDevice(path string, blockSize int) (*Device, error) {
	if err := CheckBlockSize(blockSize); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("%w: %s", ErrNoDevice, path)
	case errors.Is(err, syscall.EROFS), errors.Is(err, os.ErrPermission):
		return nil, fmt.Errorf("%w: %s: %w", ErrReadOnly, path, err)
	case err != nil:
		return nil, fmt.Errorf("sdcard: open %s: %w", path, err)
	}
	// Seek to the end works for image files and block devices alike.
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("sdcard: size of %s: %w", path, err)
	}
	if size < int64(blockSize) {
		f.Close()
		return nil, fmt.Errorf("%w: %s has %d bytes, a block is %d", ErrTooSmall, path, size, blockSize)
	}
	return &Device{f: f, size: size, path: path}, nil
}

func checkAligned(off int64, n int, size int64) error {
	if off%Sector != 0 || off < 0 || off+int64(n) > size {
		return fmt.Errorf("%w: offset %d length %d size %d", ErrUnaligned, off, n, size)
	}
	if n%Sector != 0 && off+int64(n) != size {
		return fmt.Errorf("%w: offset %d length %d", ErrUnaligned, off, n)
	}
	return nil
}

// ReadAt reads len(p) bytes at off.
func (d *Device) ReadAt(p []byte, off int64) (int, error) {
	if err := checkAligned(off, len(p), d.size); err != nil {
		return 0, err
	}
	n, err := d.f.ReadAt(p, off)
	if err != nil {
		return n, fmt.Errorf("sdcard: read %s at %d: %w", d.path, off, err)
	}
	return n, nil
}

// WriteAt writes p at off.
func (d *Device) WriteAt(p []byte, off int64) (int, error) {
	if err := checkAligned(off, len(p), d.size); err != nil {
		return 0, err
	}
	n, err := d.f.WriteAt(p, off)
	if err != nil {
		return n, fmt.Errorf("sdcard: write %s at %d: %w", d.path, off, err)
	}
	d.wrote(off, n)
	return n, nil
}

// Size is the device size in bytes.
func (d *Device) Size() int64 { return d.size }

// Sync makes every write so far durable.
func (d *Device) Sync() error {
	if err := syncData(d.f); err != nil {
		return fmt.Errorf("sdcard: fsync %s: %w", d.path, err)
	}
	return nil
}

// Close closes the device.
func (d *Device) Close() error { return d.f.Close() }
