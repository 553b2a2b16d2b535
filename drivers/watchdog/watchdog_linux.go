package watchdog

import (
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Device is an open watchdog device.
type Device struct {
	f       *os.File
	path    string
	timeout time.Duration
	ident   string
}

// Open opens (and so arms) the watchdog at path and sets its timeout, which
// must be a whole number of seconds the driver accepts. On any error after
// the device was opened it is disarmed again.
func Open(path string, timeout time.Duration) (*Device, error) {
	if timeout < time.Second || timeout%time.Second != 0 {
		return nil, fmt.Errorf("watchdog: timeout %v is not a whole number of seconds", timeout)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("watchdog: %w", err)
	}
	d := &Device{f: f, path: path}
	fail := func(err error) (*Device, error) {
		return nil, errors.Join(fmt.Errorf("watchdog: %s: %w", path, err), d.Close())
	}
	fd := int(f.Fd())
	if info, err := unix.IoctlGetWatchdogInfo(fd); err == nil {
		d.ident = unix.ByteSliceToString(info.Identity[:])
	}
	if err := unix.IoctlSetPointerInt(fd, unix.WDIOC_SETTIMEOUT, int(timeout/time.Second)); err != nil {
		return fail(fmt.Errorf("set timeout %v: %w", timeout, err))
	}
	secs, err := unix.IoctlGetUint32(fd, unix.WDIOC_GETTIMEOUT)
	if err != nil {
		return fail(fmt.Errorf("get timeout: %w", err))
	}
	d.timeout = time.Duration(secs) * time.Second
	if err := d.Feed(); err != nil {
		return fail(err)
	}
	return d, nil
}

// Timeout returns the timeout the driver actually set (it may round).
// Feed at least every Timeout()/3.
func (d *Device) Timeout() time.Duration { return d.timeout }

// Identity returns the driver's identity string, e.g. "Software Watchdog".
func (d *Device) Identity() string { return d.ident }

// Feed implements Watchdog (WDIOC_KEEPALIVE).
func (d *Device) Feed() error {
	if err := unix.IoctlWatchdogKeepalive(int(d.f.Fd())); err != nil {
		return fmt.Errorf("watchdog: %s: keepalive: %w", d.path, err)
	}
	return nil
}

// Close implements Watchdog: it writes the magic 'V' and closes the device,
// which stops the watchdog.
func (d *Device) Close() error {
	_, werr := d.f.Write([]byte("V"))
	cerr := d.f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		return fmt.Errorf("watchdog: %s: magic close: %w", d.path, err)
	}
	return nil
}
