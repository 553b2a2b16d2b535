package sdcard

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// startWriteback asks the kernel to start writing a file range back to
// the disk without waiting for it (sync_file_range with
// SYNC_FILE_RANGE_WRITE), so that the fsync closing a round finds little
// left to write. It is a hint: errors are ignored (the fsync reports any).
func startWriteback(c syscall.Conn, off, n int64) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		unix.SyncFileRange(int(fd), off, n, unix.SYNC_FILE_RANGE_WRITE)
	})
}

// prefetch asks the kernel to start reading a range of the device into
// the page cache (POSIX_FADV_WILLNEED) without waiting for it, so that
// the reads of a batch of blocks that follow find the disk busy on all
// of them at once. A hint: errors are ignored.
func (d *Device) prefetch(off int64, n int) {
	rc, err := d.f.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		unix.Fadvise(int(fd), off, int64(n), unix.FADV_WILLNEED)
	})
}
