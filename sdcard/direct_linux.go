package sdcard

import (
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// openDirect opens path for writes that bypass the page cache.
func openDirect(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|unix.O_DIRECT, 0)
}

// hugeMemory maps n bytes (rounded up to whole huge pages) outside the Go
// heap, asking for transparent huge pages; free unmaps them. Without a
// mapping it falls back to the Go heap.
func hugeMemory(n int) ([]byte, func()) {
	const huge = 2 << 20
	size := (n + huge - 1) / huge * huge
	// One huge page more, to start the buffer on a huge page's boundary.
	mem, err := unix.Mmap(-1, 0, size+huge, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return make([]byte, n), func() {}
	}
	at := 0
	if r := int(uintptr(unsafe.Pointer(&mem[0])) % huge); r != 0 {
		at = huge - r
	}
	_ = unix.Madvise(mem[at:at+size], unix.MADV_HUGEPAGE) // a hint: 4 KiB pages without it
	return mem[at : at+n : at+n], func() { unix.Munmap(mem) }
}

// writevAt writes the pieces of iov one after the other from off
// (pwritev), retrying the rest after a short write.
func writevAt(f *os.File, iov [][]byte, off int64) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	total := 0
	for len(iov) > 0 {
		var n int
		var werr error
		if err := rc.Write(func(fd uintptr) bool {
			n, werr = unix.Pwritev(int(fd), iov, off)
			return werr != unix.EAGAIN
		}); err != nil {
			return total, err
		}
		if werr != nil {
			return total, werr
		}
		if n == 0 {
			return total, fmt.Errorf("sdcard: pwritev wrote nothing at %d", off)
		}
		total += n
		off += int64(n)
		for n > 0 && len(iov) > 0 {
			if n >= len(iov[0]) {
				n -= len(iov[0])
				iov = iov[1:]
			} else {
				iov[0] = iov[0][n:]
				n = 0
			}
		}
	}
	return total, nil
}
