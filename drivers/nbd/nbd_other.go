//go:build !linux

package nbd

import (
	"net"
	"os"
)

// Conn is a connection to the kernel's NBD driver; only Linux has one.
type Conn struct{}

var _ Attacher = (*Conn)(nil)

// Open returns ErrNotSupported.
func Open() (*Conn, error) { return nil, ErrNotSupported }

// Connect returns ErrNotSupported.
func (*Conn) Connect(Config, []*os.File) (int, error) { return 0, ErrNotSupported }

// Reconfigure returns ErrNotSupported.
func (*Conn) Reconfigure(int, Reconfig, []*os.File) error { return ErrNotSupported }

// Identifier returns ErrNotSupported.
func (*Conn) Identifier(int) (string, error) { return "", ErrNotSupported }

// Status returns ErrNotSupported.
func (*Conn) Status(int) (bool, error) { return false, ErrNotSupported }

// Disconnect returns ErrNotSupported.
func (*Conn) Disconnect(int) error { return ErrNotSupported }

// Close does nothing.
func (*Conn) Close() error { return nil }

// SocketPairs returns ErrNotSupported.
func SocketPairs(int) ([]*os.File, []net.Conn, error) { return nil, nil, ErrNotSupported }

// SetIOFlusher returns ErrNotSupported.
func SetIOFlusher() error { return ErrNotSupported }

// LockMemory returns ErrNotSupported.
func LockMemory() error { return ErrNotSupported }
