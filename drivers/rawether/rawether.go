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

// ErrLinkDown is wrapped by Recv and Send when the interface went down or
// away under the Conn (ENETDOWN, ENXIO, ENODEV). A Conn on an interface
// that was deleted and created again under the same name stays bound to
// the old one until Refresh.
var ErrLinkDown = errors.New("rawether: interface down or gone")

// ErrNoInterface is wrapped by Refresh when no interface has the Conn's
// name.
var ErrNoInterface = errors.New("rawether: no such interface")

// ErrTruncated is wrapped by Recv when a payload was longer than the
// caller's buffer: the first len(buf) bytes were copied. The next Recv
// goes on at once.
var ErrTruncated = errors.New("rawether: payload truncated")

// Filter selects the frames a Conn receives. On Linux it is a socket
// filter (classic BPF): frames it refuses never leave the kernel.
type Filter struct {
	// Match lists byte strings the payload must hold at given offsets.
	Match []Match
	// MinLen and MaxLen bound the payload length, Ethernet padding
	// included (0: no bound).
	MinLen, MaxLen int
	// Lengths fixes the payload length of some kinds of payload.
	Lengths []LengthIf
}

// LengthIf is a condition of a Filter: a payload whose byte at Offset is
// Value is exactly Len bytes long.
type LengthIf struct {
	Offset int
	Value  byte
	Len    int
}

// Match is a condition of a Filter: the payload holds Value at Offset.
type Match struct {
	Offset int
	Value  []byte
}

// Accepts reports whether the filter passes payload; the in-memory fakes
// use it, and tests compare it with the kernel's verdict.
func (f *Filter) Accepts(payload []byte) bool {
	if f == nil {
		return true
	}
	if len(payload) < f.MinLen || (f.MaxLen > 0 && len(payload) > f.MaxLen) {
		return false
	}
	for _, m := range f.Match {
		if m.Offset < 0 || m.Offset+len(m.Value) > len(payload) || string(payload[m.Offset:m.Offset+len(m.Value)]) != string(m.Value) {
			return false
		}
	}
	for _, l := range f.Lengths {
		if l.Offset >= 0 && l.Offset < len(payload) && payload[l.Offset] == l.Value && len(payload) != l.Len {
			return false
		}
	}
	return true
}

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
	// returns the payload length and the sender's MAC, which is valid
	// until the next Recv (clone it to keep it: no allocation per frame).
	// The payload may carry Ethernet padding. Recv returns an error wrapping
	// os.ErrDeadlineExceeded after the read deadline and net.ErrClosed
	// after Close. Frames this Conn sent itself are not received.
	Recv(buf []byte) (n int, src net.HardwareAddr, err error)
	// SetReadDeadline sets the deadline for Recv; the zero time clears it.
	SetReadDeadline(t time.Time) error
	// Addr returns the interface's MAC address.
	Addr() net.HardwareAddr
	// Refresh looks the interface up by name again. When it was deleted
	// and created again (another index), Refresh opens a socket on the new
	// one with the same EtherType and filter, closes the old one (a Recv
	// blocked on it goes on with the new one) and reports true. It
	// returns an error wrapping ErrNoInterface while the name is missing.
	// It is safe to call from any goroutine.
	Refresh() (reopened bool, err error)
	// Close closes the Conn and unblocks Recv.
	Close() error
}

// ErrNoFrame is returned by a Drainer's RecvNow when no frame is queued.
var ErrNoFrame = errors.New("rawether: no frame queued")

// Drainer is a Conn whose socket no thread waits on (ListenQuiet): the
// frames queue up in the kernel until the owner takes them with RecvNow,
// each with its arrival time.
type Drainer interface {
	Conn
	// RecvNow returns at once: the next queued frame as Recv does, with
	// the time the kernel received it, or an error wrapping ErrNoFrame
	// when none is queued.
	RecvNow(buf []byte) (n int, src net.HardwareAddr, at time.Time, err error)
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
