package daemon

import (
	"errors"
	"log/slog"
	"sync"

	"github.com/pairguard/pairguard/drivers/nbd"
)

var tuneOnce sync.Once

// tuneForBlockDevice prepares the daemon's process, once, to serve
// [datastore] nbd-device: a process that serves a block device must not
// wait on that device to get memory. Every thread is marked
// PR_SET_IO_FLUSHER (its allocations never start I/O to reclaim memory;
// threads the Go runtime creates later inherit the mark from the thread
// that clones them), and the pages mapped now, the code above all, are
// locked in memory as they are touched, so that a fault never has to read
// them back from a card the kernel is waiting on. Either failing is a
// warning: the device is served, with the risk named.
func tuneForBlockDevice(log *slog.Logger) {
	tuneOnce.Do(func() {
		if err := nbd.SetIOFlusher(); err != nil && !errors.Is(err, nbd.ErrNotSupported) {
			log.Warn("cannot mark the daemon an I/O flusher (needs CAP_SYS_RESOURCE and a build without cgo); "+
				"serving the NBD device may deadlock under memory pressure", "err", err)
		} else if err == nil {
			log.Info("the daemon is an I/O flusher (PR_SET_IO_FLUSHER): it serves a block device")
		}
		if err := nbd.LockMemory(); err != nil && !errors.Is(err, nbd.ErrNotSupported) {
			log.Warn("cannot lock the daemon's memory (needs CAP_IPC_LOCK or a larger RLIMIT_MEMLOCK); "+
				"serving the NBD device may deadlock under memory pressure", "err", err)
		} else if err == nil {
			log.Info("the daemon's memory is locked: it serves a block device")
		}
	})
}
