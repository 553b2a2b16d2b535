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
