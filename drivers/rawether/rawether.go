// Package rawether sends and receives raw Ethernet frames of one EtherType
// on one interface, and watches the link state of an interface. The daemon
// uses it for the failover-line heartbeats (EtherType 0x88B5) on LAN 2 and
// on LAN 1.
//
// On Linux, Listen opens an AF_PACKET SOCK_RAW socket with
// github.com/mdlayher/packet, bound to the interface and the EtherType, and
// WatchLink follows RTM_NEWLINK/RTM_DELLINK messages through
// github.com/jsimonetti/rtnetlink. Both need CAP_NET_RAW (Listen) or a
// netlink socket (WatchLink). On other systems both return
// ErrNotSupported.
//
// Package rawethertest provides an in-memory hub of Conns for tests.
package rawether

import (
	"errors"
	"net"
	"time"
)

// ErrNotSupported is returned by Listen and WatchLink on systems other than
// Linux.
var ErrNotSupported = errors.New("rawether: not supported on this system")

// Broadcast is the Ethernet broadcast address, the default destination of
// heartbeats when no peer MAC is configured.
var Broadcast = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// Conn sends and receives the payloads of Ethernet frames of one EtherType
// on one interface.
type Conn interface {
	// Send sends payload to dst (a unicast MAC or Broadcast) in an Ethernet
	// frame from Addr(). It is safe to call from several goroutines.
	Send(dst net.HardwareAddr, payload []byte) error
	// Recv blocks until a frame arrives, copies its payload into buf and
	// returns the payload length and the sender's MAC. The payload may
	// carry Ethernet padding. Recv returns an error wrapping
	// os.ErrDeadlineExceeded after the read deadline and net.ErrClosed
	// after Close. Frames this Conn sent itself are not received.
	Recv(buf []byte) (n int, src net.HardwareAddr, err error)
	// SetReadDeadline sets the deadline for Recv; the zero time clears it.
	SetReadDeadline(t time.Time) error
	// Addr returns the interface's MAC address.
	Addr() net.HardwareAddr
	// Close closes the Conn and unblocks Recv.
	Close() error
}

// LinkEvent is a change of the state of a watched link.
type LinkEvent struct {
	// Name is the interface name.
	Name string
	// Up reports whether the link can carry frames: administratively up
	// with carrier (IFF_UP and IFF_LOWER_UP, operational state not down).
	// A missing interface is down.
	Up bool
}
