package nbd

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// requestTimeout bounds one netlink exchange; the kernel answers at once.
const requestTimeout = 10 * time.Second

// Conn is a generic-netlink connection to the NBD driver.
type Conn struct {
	c         *genetlink.Conn
	fam       genetlink.Family
	deadlines bool // false for the tests' fake socket, which has none
}

var _ Attacher = (*Conn)(nil)

// Open connects to the kernel's "nbd" family; ErrNoFamily when the
// module is absent.
func Open() (*Conn, error) {
	c, err := genetlink.Dial(nil)
	if err != nil {
		return nil, fmt.Errorf("nbd: generic netlink: %w", err)
	}
	conn, err := newConn(c)
	if err != nil {
		return nil, err
	}
	conn.deadlines = true
	return conn, nil
}

func newConn(c *genetlink.Conn) (*Conn, error) {
	fam, err := c.GetFamily(FamilyName)
	if err != nil {
		c.Close()
		if errors.Is(err, os.ErrNotExist) {
			return nil, ErrNoFamily
		}
		return nil, fmt.Errorf("nbd: family %q: %w", FamilyName, err)
	}
	return &Conn{c: c, fam: fam}, nil
}

// Close closes the netlink connection; attached devices stay attached.
func (c *Conn) Close() error { return c.c.Close() }

func (c *Conn) execute(cmd uint8, data []byte, flags netlink.HeaderFlags) ([]genetlink.Message, error) {
	if c.deadlines {
		if err := c.c.SetDeadline(time.Now().Add(requestTimeout)); err != nil {
			return nil, err
		}
	}
	msg := genetlink.Message{
		Header: genetlink.Header{Command: cmd, Version: familyVersion},
		Data:   data,
	}
	return c.c.Execute(msg, c.fam.ID, netlink.Request|flags)
}

// Connect implements Attacher: NBD_CMD_CONNECT. The kernel answers with
// the index of the device it bound (no ACK is asked for: the answer is
// the reply, an error the netlink error).
func (c *Conn) Connect(cfg Config, socks []*os.File) (int, error) {
	data, err := encodeConnect(cfg, fds(socks))
	if err != nil {
		return 0, err
	}
	msgs, err := c.execute(cmdConnect, data, 0)
	if err != nil {
		return 0, fmt.Errorf("nbd: connect: %w", err)
	}
	if len(msgs) != 1 {
		return 0, fmt.Errorf("nbd: connect: %d replies", len(msgs))
	}
	return decodeIndex(msgs[0].Data)
}

// Reconfigure implements Attacher: NBD_CMD_RECONFIGURE.
func (c *Conn) Reconfigure(index int, r Reconfig, socks []*os.File) error {
	data, err := encodeReconfigure(index, r, fds(socks))
	if err != nil {
		return err
	}
	if _, err := c.execute(cmdReconfigure, data, netlink.Acknowledge); err != nil {
		return fmt.Errorf("nbd: reconfigure /dev/nbd%d: %w", index, err)
	}
	return nil
}

// Status implements Attacher: NBD_CMD_STATUS.
func (c *Conn) Status(index int) (bool, error) {
	data, err := encodeStatus(index)
	if err != nil {
		return false, err
	}
	msgs, err := c.execute(cmdStatus, data, 0)
	if err != nil {
		return false, fmt.Errorf("nbd: status of /dev/nbd%d: %w", index, err)
	}
	if len(msgs) != 1 {
		return false, fmt.Errorf("nbd: status: %d replies", len(msgs))
	}
	return decodeStatus(msgs[0].Data, index)
}

// Identifier implements Attacher: the kernel shows it in sysfs
// (/sys/block/nbdN/backend, there while the device is connected); netlink
// has no way to read it.
func (c *Conn) Identifier(index int) (string, error) {
	if index < 0 {
		return "", fmt.Errorf("nbd: identifier of device %d", index)
	}
	b, err := os.ReadFile(fmt.Sprintf("/sys/block/nbd%d/backend", index))
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("nbd: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// Disconnect implements Attacher: NBD_CMD_DISCONNECT.
func (c *Conn) Disconnect(index int) error {
	data, err := encodeDisconnect(index)
	if err != nil {
		return err
	}
	if _, err := c.execute(cmdDisconnect, data, netlink.Acknowledge); err != nil {
		return fmt.Errorf("nbd: disconnect /dev/nbd%d: %w", index, err)
	}
	return nil
}

func fds(socks []*os.File) []int {
	out := make([]int, len(socks))
	for i, s := range socks {
		out[i] = int(s.Fd())
	}
	return out
}

// SocketPairs creates n connected Unix stream socket pairs: the kernel's
// ends, for Connect or Reconfigure, and the server's ends, for
// Server.ServeTransmission. On error nothing stays open.
func SocketPairs(n int) (kernel []*os.File, server []net.Conn, err error) {
	closeAll := func() {
		for _, f := range kernel {
			f.Close()
		}
		for _, c := range server {
			c.Close()
		}
	}
	for i := range n {
		fd, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("nbd: socketpair: %w", err)
		}
		kernel = append(kernel, os.NewFile(uintptr(fd[0]), fmt.Sprintf("nbd-kernel-%d", i)))
		sf := os.NewFile(uintptr(fd[1]), fmt.Sprintf("nbd-server-%d", i))
		c, err := net.FileConn(sf)
		sf.Close() // FileConn holds a duplicate
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("nbd: socket: %w", err)
		}
		server = append(server, c)
	}
	return kernel, server, nil
}

// SetIOFlusher marks every thread of the process PR_SET_IO_FLUSHER, so
// that its memory allocations never wait on block I/O (which could be
// I/O to the device it serves). The mark is per thread: it is set on each
// thread at once (syscall.AllThreadsSyscall), and a thread the Go runtime
// creates later inherits it from the thread that clones it. Needs
// CAP_SYS_RESOURCE. It works only in a build without cgo (as the
// firmware is built); with cgo it returns an error wrapping ENOTSUP.
func SetIOFlusher() error {
	if _, _, errno := syscall.AllThreadsSyscall(unix.SYS_PRCTL, unix.PR_SET_IO_FLUSHER, 1, 0); errno != 0 {
		return fmt.Errorf("nbd: PR_SET_IO_FLUSHER: %w", errno)
	}
	return nil
}

// LockMemory locks the pages the process has mapped now (its code above
// all) into memory as they are touched (mlockall MCL_CURRENT|MCL_ONFAULT:
// nothing is faulted in ahead), so that serving the device never waits
// for them to be read back. Later mappings (the heap the Go runtime
// grows) are not locked, so the runtime can still return memory: without
// swap, anonymous memory needs no I/O to stay, and allocations do not
// wait on I/O with SetIOFlusher. Needs CAP_IPC_LOCK or a large enough
// RLIMIT_MEMLOCK.
func LockMemory() error {
	if err := unix.Mlockall(unix.MCL_CURRENT | unix.MCL_ONFAULT); err != nil {
		return fmt.Errorf("nbd: mlockall: %w", err)
	}
	return nil
}
