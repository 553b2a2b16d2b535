package daemon

import (
	"context"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// timerFD is a CLOCK_MONOTONIC timerfd in the network poller; a goroutine
// reads it and calls fire. Both system calls are raw: they never block
// (the descriptor is non-blocking), and a system call the scheduler sees
// wakes its monitor thread.
type timerFD struct {
	f  *os.File
	rc syscall.RawConn
	fd int
}

// newClock returns a timerfd clock, or a time.Timer when the kernel has
// no timerfd.
func newClock(ctx context.Context, d *Daemon, fire func()) clock {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		d.log.Warn("no timerfd; the wake-up timer is a runtime timer", "err", err)
		return newGoTimer(fire)
	}
	f := os.NewFile(uintptr(fd), "timerfd")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return newGoTimer(fire)
	}
	t := &timerFD{f: f, rc: rc, fd: fd}
	d.wg.Go(func() {
		var n [8]byte // expirations since the last read
		read := func(fd uintptr) bool {
			_, _, errno := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&n[0])), 8)
			return errno != unix.EAGAIN && errno != unix.EINTR
		}
		for {
			if err := t.rc.Read(read); err != nil {
				return // closed
			}
			if ctx.Err() != nil {
				return
			}
			fire()
		}
	})
	return t
}

func (t *timerFD) set(d time.Duration) error {
	v := unix.ItimerSpec{Value: unix.NsecToTimespec(int64(d))}
	if _, _, errno := unix.RawSyscall6(unix.SYS_TIMERFD_SETTIME, uintptr(t.fd), 0, uintptr(unsafe.Pointer(&v)), 0, 0, 0); errno != 0 {
		return os.NewSyscallError("timerfd_settime", errno)
	}
	return nil
}

func (t *timerFD) close() error { return t.f.Close() }
