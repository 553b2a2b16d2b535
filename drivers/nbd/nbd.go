// Package nbd attaches the kernel's NBD client (/dev/nbdN) to Pairguard's
// NBD server through the "nbd" generic-netlink family, as nbd-client's
// netlink mode does; no ioctl and no handshake on the kernel's side.
//
// # Protocol subset
//
// Family "nbd", version 1 (linux/nbd-netlink.h). Commands sent:
//
//   - NBD_CMD_CONNECT: NBD_ATTR_INDEX (u32, omitted to let the kernel
//     choose), NBD_ATTR_SIZE_BYTES, NBD_ATTR_BLOCK_SIZE_BYTES,
//     NBD_ATTR_SERVER_FLAGS (the export's transmission flags),
//     NBD_ATTR_CLIENT_FLAGS, NBD_ATTR_TIMEOUT and NBD_ATTR_DEAD_CONN_TIMEOUT
//     (u64 seconds, omitted when zero), NBD_ATTR_BACKEND_IDENTIFIER
//     (string, omitted when empty) and NBD_ATTR_SOCKETS: one nested
//     NBD_SOCK_ITEM per socket holding NBD_SOCK_FD (u32). The kernel
//     answers with NBD_ATTR_INDEX, the device it bound.
//   - NBD_CMD_RECONFIGURE: NBD_ATTR_INDEX, NBD_ATTR_BACKEND_IDENTIFIER
//     (the kernel refuses a RECONFIGURE of a device connected with an
//     identifier unless it names the same one: EINVAL, "must specify
//     backend"), optionally NBD_ATTR_TIMEOUT and NBD_ATTR_DEAD_CONN_TIMEOUT,
//     and NBD_ATTR_SOCKETS: after a daemon restart the device stalls, for
//     up to the dead-connection timeout, instead of failing I/O, until new
//     sockets replace the dead ones.
//   - NBD_CMD_DISCONNECT: NBD_ATTR_INDEX.
//   - NBD_CMD_STATUS: NBD_ATTR_INDEX; the reply's NBD_ATTR_DEVICE_LIST
//     holds one NBD_DEVICE_ITEM {NBD_DEVICE_INDEX u32,
//     NBD_DEVICE_CONNECTED u8}, none for a device that does not exist.
//     "Connected" is the kernel's count of configuration references: it
//     stays set while the device is open (a mounted filesystem) even after
//     its server died.
//
// Every u32/u64 is in host byte order, as netlink wants; nested
// attributes carry NLA_F_NESTED. The NBD_CMD_LINK_DEAD multicast is not
// used.
//
// # What the kernel does
//
// On Debian's Linux 6.1 (arm64), checked by [TestLive] on a board of the
// QEMU pair (test/hil, TestNBDDriverLive), except the second point, read
// in the driver's source:
//
//   - RECONFIGURE without the identifier the device was connected with
//     fails with EINVAL ("must specify backend" in the kernel log).
//   - RECONFIGURE gives a socket only to a connection the kernel has seen
//     die; a socket given while none is dead is dropped silently (the
//     kernel's ENOSPC is turned into success). The caller sees its server
//     end closed at once, with no request on it.
//   - A request in flight on a connection that dies is resent on another
//     connection only when its timeout fires (NBD_ATTR_TIMEOUT; 30 s when
//     unset); with more than one connection a timeout never fails the
//     request, but it marks the connection it was sent on dead.
//   - With every connection dead, a new request waits up to the
//     dead-connection timeout for a RECONFIGURE ("Dead connection, failed
//     to find a fallback" is logged, yet it waits), then fails with EIO.
//
// The kernel end of each socket pair ([SocketPairs]) goes to the kernel;
// the other end is served by sdcard/nbd's Server.ServeTransmission with
// the same flags and size. The kernel takes its own reference on each
// socket, so the caller closes its copies after Connect or Reconfigure.
//
// # Memory
//
// The process that serves a block device must not wait on that device to
// free memory: [SetIOFlusher] marks every thread PR_SET_IO_FLUSHER
// (allocations never recurse into I/O; threads created later inherit the
// mark), and [LockMemory] locks the pages mapped now, the code above all
// (mlockall MCL_CURRENT|MCL_ONFAULT: locked as they are touched, so
// nothing is read in ahead, and the heap the Go runtime grows later can
// still be returned).
//
// Only Linux has the NBD driver; elsewhere everything returns
// [ErrNotSupported]. The host running the tests may lack the module:
// [Open] then returns [ErrNoFamily] and the live test skips.
package nbd

import (
	"errors"
	"fmt"
	"math/bits"
	"os"
	"strconv"
	"strings"
	"time"
)

// Sentinel errors.
var (
	// ErrNotSupported is returned on systems without the NBD driver.
	ErrNotSupported = errors.New("nbd: not supported on this OS")
	// ErrNoFamily means the kernel has no "nbd" generic-netlink family
	// (module nbd not loaded or not built).
	ErrNoFamily = errors.New("nbd: kernel has no nbd netlink family (modprobe nbd)")
)

// FamilyName is the generic-netlink family of the NBD driver.
const FamilyName = "nbd"

// Generic-netlink commands and attributes (linux/nbd-netlink.h).
const (
	familyVersion = 1

	cmdConnect     = 1
	cmdDisconnect  = 2
	cmdReconfigure = 3
	cmdStatus      = 5

	attrIndex           = 1
	attrSizeBytes       = 2
	attrBlockSizeBytes  = 3
	attrTimeout         = 4
	attrServerFlags     = 5
	attrClientFlags     = 6
	attrSockets         = 7
	attrDeadConnTimeout = 8
	attrDeviceList      = 9
	attrBackendID       = 10

	sockItem = 1
	sockFD   = 1

	deviceItem      = 1
	deviceIndex     = 1
	deviceConnected = 2
)

// Client flags (NBD_ATTR_CLIENT_FLAGS).
const (
	// ClientDestroyOnDisconnect frees the device when it disconnects.
	ClientDestroyOnDisconnect = 1 << 0
	// ClientDisconnectOnClose disconnects when the last opener closes it.
	ClientDisconnectOnClose = 1 << 1
)

// Config describes a device to connect.
type Config struct {
	// Index is the device number N of /dev/nbdN; -1 lets the kernel
	// choose a free one.
	Index int
	// Size is the export size in bytes, a multiple of BlockSize.
	Size uint64
	// BlockSize is the device's logical block size: a power of two from
	// 512 to 65536 (the kernel may refuse more than its page size).
	// 0 means 4096.
	BlockSize uint64
	// ServerFlags are the export's transmission flags (sdcard/nbd's
	// Server.Flags); they tell the kernel which commands it may send.
	ServerFlags uint64
	// ClientFlags: ClientDestroyOnDisconnect, ClientDisconnectOnClose.
	ClientFlags uint64
	// Timeout fails a request the server has not answered in time
	// (whole seconds, rounded up); 0 keeps the kernel's default.
	Timeout time.Duration
	// DeadConnTimeout is how long the device waits for a RECONFIGURE
	// when every socket has died, before it fails I/O (whole seconds,
	// rounded up); 0 fails at once.
	DeadConnTimeout time.Duration
	// Identifier names the backend (NBD_ATTR_BACKEND_IDENTIFIER, shown
	// in sysfs as backend); optional.
	Identifier string
}

func (c Config) validate(nsocks int) error {
	bs := c.BlockSize
	if bs == 0 {
		bs = 4096
	}
	switch {
	case c.Index < -1 || c.Index > 1<<31-1:
		return fmt.Errorf("nbd: device index %d", c.Index)
	case bs < 512 || bs > 65536 || bits.OnesCount64(bs) != 1:
		return fmt.Errorf("nbd: block size %d is not a power of two from 512 to 65536", bs)
	case c.Size == 0 || c.Size%bs != 0:
		return fmt.Errorf("nbd: size %d is not a positive multiple of the block size %d", c.Size, bs)
	case c.Timeout < 0 || c.DeadConnTimeout < 0:
		return errors.New("nbd: negative timeout")
	case nsocks == 0:
		return errors.New("nbd: no sockets")
	}
	return nil
}

// seconds rounds d up to whole seconds.
func seconds(d time.Duration) uint64 {
	return uint64((d + time.Second - 1) / time.Second)
}

// ParseDevice returns N for a device path /dev/nbdN.
func ParseDevice(path string) (int, error) {
	s, ok := strings.CutPrefix(path, "/dev/nbd")
	if !ok || s == "" || strings.ContainsAny(s, "p/") {
		return 0, fmt.Errorf("nbd: %q is not /dev/nbdN", path)
	}
	n, err := strconv.ParseUint(s, 10, 31)
	if err != nil || (len(s) > 1 && s[0] == '0') {
		return 0, fmt.Errorf("nbd: %q is not /dev/nbdN", path)
	}
	return int(n), nil
}

// Reconfig is what a RECONFIGURE hands a connected device besides its
// new sockets.
type Reconfig struct {
	// Identifier must be the one the device was connected with (the
	// kernel refuses another, or none, with EINVAL).
	Identifier string
	// Timeout and DeadConnTimeout, when not zero, replace the device's
	// (whole seconds, rounded up).
	Timeout, DeadConnTimeout time.Duration
}

// Attacher is what the daemon needs from the kernel driver; *Conn
// implements it on Linux and nbdtest.Fake in tests.
type Attacher interface {
	// Connect binds a device to the sockets (the kernel ends) and
	// returns its index. A device still connected (its server died, or a
	// filesystem on it is mounted) is busy: EBUSY.
	Connect(cfg Config, socks []*os.File) (int, error)
	// Reconfigure hands a connected device new sockets in place of dead
	// ones. A socket for which no dead connection is left is dropped
	// without an error (the kernel's behaviour): its other end closes.
	Reconfigure(index int, r Reconfig, socks []*os.File) error
	// Disconnect detaches the device; I/O on it fails from then on.
	Disconnect(index int) error
	// Status reports whether device index is connected (false, nil for a
	// device that does not exist).
	Status(index int) (connected bool, err error)
	// Identifier returns the backend identifier a connected device was
	// connected with ("" if none).
	Identifier(index int) (string, error)
	Close() error
}
