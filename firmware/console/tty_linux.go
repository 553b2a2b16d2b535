package console

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// tty is an open terminal in raw mode; Close restores its settings.
type tty struct {
	*os.File
	saved *unix.Termios
}

// OpenTTY opens the terminal device path (such as /dev/ttyAMA0) for the
// console and puts it in raw mode: no echo, no line discipline, no signals
// from Ctrl-C, no output processing, 8 data bits, one byte at a time. The
// line speed is left as it is (115200 on the boards). Close restores the
// previous settings. The device does not become the controlling terminal.
func OpenTTY(path string) (io.ReadWriteCloser, error) {
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	// Through SyscallConn, not Fd, so that the file stays non-blocking and
	// Close ends a pending Read.
	var saved *unix.Termios
	err = control(f, func(fd int) error {
		var err error
		if saved, err = unix.IoctlGetTermios(fd, unix.TCGETS); err != nil {
			return fmt.Errorf("%s is not a terminal: %w", path, err)
		}
		raw := *saved
		makeRaw(&raw)
		if err := unix.IoctlSetTermios(fd, unix.TCSETS, &raw); err != nil {
			return fmt.Errorf("setting %s raw: %w", path, err)
		}
		return nil
	})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("console: %w", err), f.Close())
	}
	return &tty{File: f, saved: saved}, nil
}

// control runs fn on f's descriptor.
func control(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// makeRaw does what cfmakeraw(3) does, keeping the speed.
func makeRaw(t *unix.Termios) {
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8 | unix.CREAD
	t.Cc[unix.VMIN] = 1
	t.Cc[unix.VTIME] = 0
}

// Close restores the terminal's settings and closes it.
func (t *tty) Close() error {
	err := control(t.File, func(fd int) error { return unix.IoctlSetTermios(fd, unix.TCSETS, t.saved) })
	if err != nil {
		err = fmt.Errorf("console: restoring terminal: %w", err)
	}
	return errors.Join(err, t.File.Close())
}
