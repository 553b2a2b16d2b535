package sdcard

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// setRcvLowat sets SO_RCVLOWAT of a TCP connection.
func setRcvLowat(c net.Conn, n int) error {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return unix.ENOTSUP
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVLOWAT, n)
	}); err != nil {
		return err
	}
	return serr
}

// readQuiet reads the socket under c with a raw read(2), which the Go
// scheduler does not see as a system call: a non-blocking read returns at
// once, and an ordinary one would wake the runtime's monitor thread each
// time the process leaves idleness (every wake-up of a bulk stream), which
// then polls every 20 µs while the stream is read: most of the receiver's
// context switches in an initial sync (issue 15). The wait for data is
// the poller's, with c's read deadline.
func readQuiet(c net.Conn, p []byte) (int, error) {
	sc, ok := c.(syscall.Conn)
	if !ok || len(p) == 0 {
		return c.Read(p)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return c.Read(p)
	}
	var n int
	var serr error
	err = rc.Read(func(fd uintptr) bool {
		r, _, e := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		switch e {
		case unix.EAGAIN:
			return false
		case unix.EINTR:
			return false
		case 0:
			n = int(r)
		default:
			serr = e
		}
		return true
	})
	switch {
	case err != nil:
		return 0, err
	case serr != nil:
		return 0, &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError("read", serr)}
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}
