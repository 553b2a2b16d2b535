// Package sdcardtest holds fakes for the datastore mirror's tests: an
// in-memory block device, and a recording layer that models what a power
// cut leaves of a device and of the files in the state directory.
//
// It does not import sdcard, so that sdcard's own tests can use it; its
// types satisfy sdcard.BlockDevice by their method sets (and a store needs
// a one-line adapter for OpenFile's result type).
package sdcardtest

import (
	"errors"
	"fmt"
	"sync"
)

// ErrUnaligned is returned for an access that is not sector-aligned.
var ErrUnaligned = errors.New("sdcardtest: unaligned access")

const sector = 512

func checkAligned(off int64, n int, size int64) error {
	if off%sector != 0 || off < 0 || off+int64(n) > size || (n%sector != 0 && off+int64(n) != size) {
		return fmt.Errorf("%w: offset %d length %d size %d", ErrUnaligned, off, n, size)
	}
	return nil
}

// MemDevice is an in-memory block device. It counts syncs and can be told
// to fail reads, writes or syncs (a card that dies while running).
type MemDevice struct {
	mu   sync.Mutex
	data []byte
	// Syncs counts Sync calls.
	Syncs int
	fail  error
	// writes left before writes and syncs fail with failW (-1: never)
	writesLeft int
	failW      error
}

// NewMemDevice returns a zeroed device of size bytes.
func NewMemDevice(size int64) *MemDevice { return &MemDevice{data: make([]byte, size), writesLeft: -1} }

// FailWritesAfter lets n more writes succeed, then fails every write and
// sync with err (a card that dies in the middle of an apply); reads keep
// working. A nil err or negative n clears it.
func (m *MemDevice) FailWritesAfter(n int, err error) {
	m.mu.Lock()
	m.writesLeft, m.failW = n, err
	if err == nil || n < 0 {
		m.writesLeft, m.failW = -1, nil
	}
	m.mu.Unlock()
}

// Fail makes every later access fail with err (nil: work again).
func (m *MemDevice) Fail(err error) {
	m.mu.Lock()
	m.fail = err
	m.mu.Unlock()
}

// ReadAt reads len(p) bytes at off.
func (m *MemDevice) ReadAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return 0, m.fail
	}
	if err := checkAligned(off, len(p), int64(len(m.data))); err != nil {
		return 0, err
	}
	return copy(p, m.data[off:]), nil
}

// WriteAt writes p at off.
func (m *MemDevice) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return 0, m.fail
	}
	if m.failW != nil {
		if m.writesLeft == 0 {
			return 0, m.failW
		}
		m.writesLeft--
	}
	if err := checkAligned(off, len(p), int64(len(m.data))); err != nil {
		return 0, err
	}
	return copy(m.data[off:], p), nil
}

// Size is the device's size in bytes.
func (m *MemDevice) Size() int64 { return int64(len(m.data)) }

// Sync counts a sync.
func (m *MemDevice) Sync() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	if m.failW != nil && m.writesLeft == 0 {
		return m.failW
	}
	m.Syncs++
	return nil
}

// Close does nothing.
func (m *MemDevice) Close() error { return nil }

// Bytes returns a copy of the contents.
func (m *MemDevice) Bytes() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]byte(nil), m.data...)
}
