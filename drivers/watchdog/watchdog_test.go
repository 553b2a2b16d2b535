package watchdog_test

import (
	"os"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pairguard/pairguard/drivers/watchdog"
	"github.com/pairguard/pairguard/drivers/watchdog/watchdogtest"
)

var _ watchdog.Watchdog = (*watchdog.Device)(nil)
var _ watchdog.Watchdog = (*watchdogtest.Watchdog)(nil)

func TestOpenErrors(t *testing.T) {
	if _, err := watchdog.Open("/dev/pg-no-such-watchdog", 10*time.Second); err == nil {
		t.Error("opening a missing device succeeded")
	}
	if _, err := watchdog.Open("/dev/null", 1500*time.Millisecond); err == nil {
		t.Error("a fractional timeout was accepted")
	}
	// /dev/null opens but is no watchdog: the ioctl fails and the error
	// says which step.
	_, err := watchdog.Open("/dev/null", 10*time.Second)
	if err == nil {
		t.Fatal("/dev/null accepted as a watchdog")
	}
	t.Log(err)
}

// TestReal arms a real watchdog. Never point it at a watchdog that can
// reset the machine you care about: in the QEMU guest use
// `modprobe softdog soft_noboot=1` and PAIRGUARD_TEST_WATCHDOG=/dev/watchdog0.
func TestReal(t *testing.T) {
	path := os.Getenv("PAIRGUARD_TEST_WATCHDOG")
	if path == "" {
		t.Skip("set PAIRGUARD_TEST_WATCHDOG=/dev/watchdogN (softdog soft_noboot=1) to arm a real watchdog; never the host's")
	}
	d, err := watchdog.Open(path, 7*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %q, timeout %v", path, d.Identity(), d.Timeout())
	if d.Timeout() != 7*time.Second {
		t.Errorf("timeout %v, want 7s", d.Timeout())
	}
	for range 3 {
		if err := d.Feed(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestFake(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := watchdogtest.New(3 * time.Second)
		for range 10 {
			time.Sleep(time.Second)
			if err := w.Feed(); err != nil {
				t.Fatal(err)
			}
		}
		if w.Fired() || w.Feeds() != 10 {
			t.Fatalf("fired %v after %d regular feeds", w.Fired(), w.Feeds())
		}
		time.Sleep(3 * time.Second)
		if w.Fired() {
			t.Fatal("fired at exactly the timeout")
		}
		time.Sleep(time.Millisecond)
		if !w.Fired() {
			t.Fatal("not fired after the timeout")
		}
		w.Feed()
		if !w.Fired() {
			t.Fatal("a late feed undid a reset")
		}

		w2 := watchdogtest.New(time.Second)
		w2.Close()
		time.Sleep(time.Hour)
		if w2.Fired() || !w2.Closed() {
			t.Fatal("a magic-closed watchdog fired")
		}
		if w2.Feed() == nil {
			t.Fatal("feed after close succeeded")
		}
	})
}
