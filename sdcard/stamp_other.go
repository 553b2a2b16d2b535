//go:build !linux

package sdcard

import "errors"

// ChangeStamp is not implemented here: the sum cache is not used.
func (d *Device) ChangeStamp() ([]byte, error) {
	return nil, errors.New("sdcard: no change stamp on this system")
}
