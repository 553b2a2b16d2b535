//go:build !linux

package sdcard

import (
	"errors"
	"net"
)

// setRcvLowat is not used outside Linux.
func setRcvLowat(c net.Conn, n int) error { return errors.New("sdcard: no SO_RCVLOWAT here") }

// readQuiet is an ordinary read outside Linux.
func readQuiet(c net.Conn, p []byte) (int, error) { return c.Read(p) }
