//go:build !linux

package sdcard

import "errors"

// Freeze is not supported outside Linux.
func Freeze(mount string) (thaw func() error, err error) {
	return nil, errors.New("sdcard: freeze: not supported on this platform")
}
