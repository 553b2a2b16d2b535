package sdcard

import (
	"errors"
	"sync"
)

// watchedDevice remembers the last I/O error of the device it wraps, so
// that a card that fails while running (read or write errors, removed)
// becomes the fault datastore-missing instead of only failing rounds.
type watchedDevice struct {
	BlockDevice
	mu     sync.Mutex
	failed error
	onFail func(error)
}

func (w *watchedDevice) note(err error) error {
	if err == nil || errors.Is(err, ErrUnaligned) {
		return err
	}
	w.mu.Lock()
	first := w.failed == nil
	w.failed = err
	w.mu.Unlock()
	if first && w.onFail != nil {
		w.onFail(err)
	}
	return err
}

func (w *watchedDevice) ReadAt(p []byte, off int64) (int, error) {
	n, err := w.BlockDevice.ReadAt(p, off)
	return n, w.note(err)
}

func (w *watchedDevice) WriteAt(p []byte, off int64) (int, error) {
	n, err := w.BlockDevice.WriteAt(p, off)
	return n, w.note(err)
}

func (w *watchedDevice) Sync() error { return w.note(w.BlockDevice.Sync()) }

func (w *watchedDevice) err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.failed
}

// CheckDevice probes the device (its first and last sectors) and returns
// the device's failure, nil when it works. A failed device counts as
// working again once a probe succeeds; the daemon calls this every few
// seconds so that the fault clears when the card is back.
func (m *Mirror) CheckDevice() error {
	w := m.watch
	size := w.Size()
	buf := make([]byte, Sector)
	_, err := w.BlockDevice.ReadAt(buf, 0)
	if err == nil && size >= 2*Sector {
		last := (size - Sector) / Sector * Sector
		n := int(size - last)
		_, err = w.BlockDevice.ReadAt(make([]byte, n), last)
	}
	if err != nil {
		w.note(err)
		return err
	}
	w.mu.Lock()
	was := w.failed
	w.failed = nil
	w.mu.Unlock()
	if was != nil {
		m.log.Info("mirror device works again", "device", m.cfg.Device)
		m.emit(Event{Kind: EventDeviceBack})
	}
	return nil
}

// prefetcher is a device that can be asked to start reading ahead.
type prefetcher interface {
	prefetch(off int64, n int)
}

func (w *watchedDevice) prefetch(off int64, n int) {
	if p, ok := w.BlockDevice.(prefetcher); ok {
		p.prefetch(off, n)
	}
}
