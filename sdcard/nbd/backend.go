package nbd

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// Backend is the storage behind an export. The server calls it from many
// goroutines at once; requests that overlap are the client's business, as
// with a disk. Offsets and lengths reaching it are already checked against
// Size and the block-size constraints.
type Backend interface {
	ReadAt(p []byte, off int64) (int, error)
	WriteAt(p []byte, off int64) (int, error)
	// Flush makes every write that has completed durable.
	Flush() error
	// Trim discards a range; it may do nothing (TRIM is a hint).
	Trim(off, length int64) error
	// Zero makes a range read back as zeroes; with noHole the range must
	// stay allocated.
	Zero(off, length int64, noHole bool) error
	// Size is the export size in bytes; it must not change while served.
	Size() int64
}

// FileBackend serves a regular file or a block device.
type FileBackend struct {
	f    *os.File
	size int64
}

// OpenFile opens path for the export; readOnly opens it read-only.
func OpenFile(path string, readOnly bool) (*FileBackend, error) {
	flag := os.O_RDWR
	if readOnly {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, fmt.Errorf("nbd: %w", err)
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("nbd: size of %s: %w", path, err), f.Close())
	}
	return &FileBackend{f: f, size: size}, nil
}

// ReadAt implements Backend.
func (b *FileBackend) ReadAt(p []byte, off int64) (int, error) { return b.f.ReadAt(p, off) }

// WriteAt implements Backend.
func (b *FileBackend) WriteAt(p []byte, off int64) (int, error) { return b.f.WriteAt(p, off) }

// Flush implements Backend with fsync.
func (b *FileBackend) Flush() error { return b.f.Sync() }

// Size implements Backend.
func (b *FileBackend) Size() int64 { return b.size }

// Trim implements Backend: a punched hole where the file system can,
// nothing otherwise.
func (b *FileBackend) Trim(off, length int64) error {
	_ = punchHole(b.f, off, length)
	return nil
}

// Zero implements Backend: a punched hole (or, with noHole, a zeroed
// allocated range) where the file system can, written zeroes otherwise.
func (b *FileBackend) Zero(off, length int64, noHole bool) error {
	if noHole {
		if zeroRange(b.f, off, length) == nil {
			return nil
		}
	} else if punchHole(b.f, off, length) == nil {
		return nil
	}
	return writeZeroes(b.f, off, length)
}

// Close closes the file.
func (b *FileBackend) Close() error { return b.f.Close() }

var zeroBlock [64 << 10]byte

func writeZeroes(w io.WriterAt, off, length int64) error {
	for length > 0 {
		n := min(length, int64(len(zeroBlock)))
		if _, err := w.WriteAt(zeroBlock[:n], off); err != nil {
			return err
		}
		off += n
		length -= n
	}
	return nil
}

// MemBackend is an export in memory, for tests.
type MemBackend struct {
	mu      sync.RWMutex
	data    []byte
	flushes int
}

// NewMemBackend returns a zeroed export of size bytes.
func NewMemBackend(size int) *MemBackend { return &MemBackend{data: make([]byte, size)} }

// ReadAt implements Backend.
func (m *MemBackend) ReadAt(p []byte, off int64) (int, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if off < 0 || off > int64(len(m.data)) {
		return 0, io.EOF
	}
	n := copy(p, m.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// WriteAt implements Backend.
func (m *MemBackend) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if off < 0 || off+int64(len(p)) > int64(len(m.data)) {
		return 0, errors.New("nbd: write beyond the end")
	}
	return copy(m.data[off:], p), nil
}

// Flush implements Backend and counts the calls.
func (m *MemBackend) Flush() error {
	m.mu.Lock()
	m.flushes++
	m.mu.Unlock()
	return nil
}

// Flushes returns how often Flush was called.
func (m *MemBackend) Flushes() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.flushes
}

// Trim implements Backend: the range reads back as zeroes afterwards.
func (m *MemBackend) Trim(off, length int64) error { return m.Zero(off, length, false) }

// Zero implements Backend.
func (m *MemBackend) Zero(off, length int64, _ bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.data[off : off+length])
	return nil
}

// Size implements Backend.
func (m *MemBackend) Size() int64 { return int64(len(m.data)) }

// Bytes returns a copy of the contents.
func (m *MemBackend) Bytes() []byte {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return append([]byte(nil), m.data...)
}
