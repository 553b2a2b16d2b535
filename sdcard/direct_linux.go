package sdcard

import (
	"os"

	"golang.org/x/sys/unix"
)

// openDirect opens path for writes that bypass the page cache.
func openDirect(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|unix.O_DIRECT, 0)
}

// alignedBuffers maps n anonymous buffers of size bytes (page aligned,
// outside the Go heap); free unmaps them.
func alignedBuffers(n, size int) ([][]byte, func(), error) {
	mem, err := unix.Mmap(-1, 0, n*size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, nil, err
	}
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = mem[i*size : (i+1)*size : (i+1)*size]
	}
	return bufs, func() { unix.Munmap(mem) }, nil
}
