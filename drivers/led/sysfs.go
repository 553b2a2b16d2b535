package led

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"periph.io/x/conn/v3/driver/driverreg"
	"periph.io/x/conn/v3/gpio"
	_ "periph.io/x/host/v3/gpioioctl" // sysfs-gpio, registered with sysfs, needs it
	"periph.io/x/host/v3/sysfs"
)

// ClassDir is where the kernel lists LED-class devices.
const ClassDir = "/sys/class/leds"

// Sysfs is an LED-class LED, set through periph's sysfs driver.
type Sysfs struct {
	led  *sysfs.LED
	name string
}

// initPeriph runs periph's driver registry once, on the first sysfs LED:
// it lists /sys/class/leds (and, as a side effect of importing sysfs, the
// GPIO chips through periph's ioctl-gpio driver, which needs no lines).
var initPeriph = sync.OnceValue(func() error {
	_, err := driverreg.Init()
	return err
})

// OpenSysfs opens the LED-class device name (as listed in /sys/class/leds),
// sets its trigger to "none" so that the kernel (mmc activity, heartbeat)
// no longer drives it, and turns it off.
func OpenSysfs(name string) (*Sysfs, error) {
	if err := initPeriph(); err != nil {
		return nil, fmt.Errorf("led: periph init: %w", err)
	}
	l, err := sysfs.LEDByName(name)
	if err != nil {
		return nil, fmt.Errorf("led: sysfs LED %q: %w", name, err)
	}
	trigger := filepath.Join(ClassDir, name, "trigger")
	if err := os.WriteFile(trigger, []byte("none"), 0); err != nil {
		return nil, fmt.Errorf("led: sysfs LED %q: %w", name, err)
	}
	s := &Sysfs{led: l, name: name}
	if err := s.Set(false); err != nil {
		return nil, err
	}
	return s, nil
}

// Set implements LED.
func (s *Sysfs) Set(on bool) error {
	if err := s.led.Out(gpio.Level(on)); err != nil {
		return fmt.Errorf("led: sysfs LED %q: %w", s.name, err)
	}
	return nil
}

// Close implements LED. periph keeps the brightness file open for the life
// of the process, so there is nothing to release.
func (s *Sysfs) Close() error { return nil }

func (s *Sysfs) String() string { return "sysfs:" + s.name }
