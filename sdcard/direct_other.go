//go:build !linux

package sdcard

import (
	"errors"
	"os"
)

// openDirect: O_DIRECT is Linux's; elsewhere the stream is not used.
func openDirect(path string) (*os.File, error) {
	return nil, errors.New("sdcard: no O_DIRECT on this platform")
}

func writevAt(f *os.File, iov [][]byte, off int64) (int, error) {
	return 0, errors.New("sdcard: no O_DIRECT on this platform")
}

// hugeMemory is the Go heap's elsewhere.
func hugeMemory(n int) ([]byte, func()) { return make([]byte, n), func() {} }
