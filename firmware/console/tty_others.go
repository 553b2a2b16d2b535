//go:build !linux

package console

import (
	"errors"
	"io"
)

// OpenTTY is only supported on Linux.
func OpenTTY(path string) (io.ReadWriteCloser, error) {
	return nil, errors.New("console: OpenTTY is only supported on Linux")
}
