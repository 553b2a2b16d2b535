//go:build !linux

package rawether

import (
	"context"
	"fmt"
)

// Listen returns ErrNotSupported on this system.
func Listen(ifname string, etherType uint16, filter *Filter) (Conn, error) {
	return nil, fmt.Errorf("rawether: listen on %s: %w", ifname, ErrNotSupported)
}

// ListenQuiet returns ErrNotSupported on this system.
func ListenQuiet(ifname string, etherType uint16, filter *Filter) (Drainer, error) {
	return nil, fmt.Errorf("rawether: listen on %s: %w", ifname, ErrNotSupported)
}

// WatchLink returns ErrNotSupported on this system.
func WatchLink(ctx context.Context, ifname string) (<-chan LinkEvent, error) {
	return nil, fmt.Errorf("rawether: watch %s: %w", ifname, ErrNotSupported)
}
