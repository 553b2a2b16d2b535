package sdcard

import (
	"os"
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

// syncData makes f's data durable with the metadata needed to read it
// back (fdatasync): an image file's modification time, which every round
// changes, does not cost a commit of the file system's journal.
func syncData(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		for {
			serr = unix.Fdatasync(int(fd))
			if serr != unix.EINTR {
				return
			}
		}
	}); err != nil {
		return err
	}
	return serr
}
