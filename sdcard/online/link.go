package online

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"github.com/pairguard/pairguard/sdcard"
)

// keepAlive finds a dead peer's socket when no write is pending.
var keepAlive = net.KeepAliveConfig{Enable: true, Idle: 2 * time.Second, Interval: time.Second, Count: 3}

// Dialer returns the Primary's dial function for Run: TCP to addr with
// keep-alives and no delay, then TLS 1.3 with the peer's key pinned
// ([sdcard.TLSConfig] of the pair key). A handshake is bounded by timeout.
func Dialer(addr string, pairKey []byte, timeout time.Duration) (func(context.Context) (net.Conn, error), error) {
	id := sdcard.NewTLSIdentity()
	if err := id.SetPairKey(pairKey); err != nil {
		return nil, err
	}
	return DialerIdentity(addr, id, timeout), nil
}

// DialerIdentity is Dialer with the node's mirror identity, which may
// change while the Primary runs (a teach-in): each dial uses the identity
// current then, and fails with sdcard.ErrNoIdentity while there is none.
func DialerIdentity(addr string, id *sdcard.TLSIdentity, timeout time.Duration) func(context.Context) (net.Conn, error) {
	conf := id.Config().Clone()             // the identity's callbacks read the current keys
	conf.DynamicRecordSizingDisabled = true // full 16 KiB records from the start
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout, KeepAliveConfig: keepAlive}, Config: conf}
	return func(ctx context.Context) (net.Conn, error) {
		if !id.Ready() {
			return nil, fmt.Errorf("online: dial %s: %w", addr, sdcard.ErrNoIdentity)
		}
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("online: dial %s: %w", addr, err)
		}
		return c, nil
	}
}

// Listen returns the Secondary's listener on addr: TLS 1.3, only a peer
// holding the pair key gets through the handshake.
func Listen(addr string, pairKey []byte) (net.Listener, error) {
	id := sdcard.NewTLSIdentity()
	if err := id.SetPairKey(pairKey); err != nil {
		return nil, err
	}
	return ListenIdentity(addr, id)
}

// ListenIdentity is Listen with the node's mirror identity: only the peer
// whose key it pins at the time of a handshake gets through (none while
// it has no identity).
func ListenIdentity(addr string, id *sdcard.TLSIdentity) (net.Listener, error) {
	lc := net.ListenConfig{KeepAliveConfig: keepAlive}
	l, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("online: listen %s: %w", addr, err)
	}
	return tls.NewListener(l, id.Config()), nil
}
