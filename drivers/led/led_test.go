package led_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pairguard/pairguard/board"
	"github.com/pairguard/pairguard/drivers/led"
	"github.com/pairguard/pairguard/drivers/led/ledtest"
)

var _ led.LED = (*led.GPIO)(nil)
var _ led.LED = (*led.Sysfs)(nil)
var _ led.LED = (*ledtest.LED)(nil)

func TestOpenNotFitted(t *testing.T) {
	_, err := led.Open(board.Output{Kind: board.OutputNone})
	if !errors.Is(err, led.ErrNotFitted) {
		t.Fatalf("Open(none) = %v", err)
	}
}

// A chip or LED that does not exist is an error the daemon can log; it
// must never panic or hang.
func TestOpenMissing(t *testing.T) {
	if _, err := led.Open(board.Output{Kind: board.OutputGPIO, Chip: "gpiochip-pg-missing", Offset: 1}); err == nil {
		t.Error("opening a missing GPIO chip succeeded")
	} else {
		t.Log(err)
	}
	if _, err := led.Open(board.Output{Kind: board.OutputSysfs, LED: "pg-missing"}); err == nil {
		t.Error("opening a missing sysfs LED succeeded")
	} else if strings.Contains(err.Error(), "periph init") {
		t.Errorf("periph's registry failed, so no sysfs LED could work: %v", err)
	} else {
		t.Log(err)
	}
}

// TestGPIOReal drives a line of a real chip, given by the environment,
// e.g. PAIRGUARD_TEST_GPIO_LED=gpiochip0:4 in the QEMU guest.
func TestGPIOReal(t *testing.T) {
	spec := os.Getenv("PAIRGUARD_TEST_GPIO_LED")
	if spec == "" {
		t.Skip("set PAIRGUARD_TEST_GPIO_LED=CHIP:LINE to drive a real GPIO line (this kernel has no gpio-sim)")
	}
	b, err := board.Load("qemu-virt-arm64", map[string]string{"led.failover": spec})
	if err != nil {
		t.Fatal(err)
	}
	l, err := led.Open(b.LEDs.Failover)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	for _, on := range []bool{true, false, true, false} {
		if err := l.Set(on); err != nil {
			t.Fatal(err)
		}
	}
	// The line is ours: a second request is refused (busy).
	if l2, err := led.Open(b.LEDs.Failover); err == nil {
		l2.Close()
		t.Error("a second request of a held line succeeded")
	}
}

// TestSysfsReal drives a real LED-class LED, given by the environment, e.g.
// PAIRGUARD_TEST_SYSFS_LED=ACT (in the QEMU guest, a gpio-leds node on a
// PL061 line with leds-gpio loaded).
func TestSysfsReal(t *testing.T) {
	name := os.Getenv("PAIRGUARD_TEST_SYSFS_LED")
	if name == "" {
		t.Skip("set PAIRGUARD_TEST_SYSFS_LED=NAME to drive a real LED-class LED")
	}
	l, err := led.Open(board.Output{Kind: board.OutputSysfs, LED: name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	dir := filepath.Join(led.ClassDir, name)
	read := func(f string) string {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	if tr := read("trigger"); !strings.Contains(tr, "[none]") {
		t.Errorf("trigger %q, want none selected", tr)
	}
	for _, on := range []bool{true, false, true, false} {
		if err := l.Set(on); err != nil {
			t.Fatal(err)
		}
		if got := read("brightness") != "0"; got != on {
			t.Errorf("after Set(%v) brightness is %s", on, read("brightness"))
		}
	}
}
