//go:build !linux

package sdcard

import (
	"os"
	"syscall"
)

// startWriteback does nothing outside Linux: the fsync closing a round
// writes everything.
func startWriteback(c syscall.Conn, off, n int64) {}

// prefetch does nothing outside Linux.
func (d *Device) prefetch(off int64, n int) {}

// syncData is fsync outside Linux.
func syncData(f *os.File) error { return f.Sync() }
