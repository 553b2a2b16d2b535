package button_test

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/pairguard/pairguard/board"
	"github.com/pairguard/pairguard/drivers/button"
	"github.com/pairguard/pairguard/drivers/button/buttontest"
)

var _ button.Button = (*button.GPIO)(nil)
var _ button.Button = (*buttontest.Button)(nil)

func TestOpenNotFitted(t *testing.T) {
	if _, err := button.Open(board.Button{Input: board.Output{Kind: board.OutputNone}}); !errors.Is(err, button.ErrNotFitted) {
		t.Fatalf("Open(none) = %v", err)
	}
}

func TestOpenMissing(t *testing.T) {
	_, err := button.OpenGPIO("gpiochip-pg-missing", "button", 3, false, board.BiasAsIs, 20*time.Millisecond)
	if err == nil {
		t.Fatal("opening a missing chip succeeded")
	}
	t.Log(err)
}

func TestNowIsMonotonic(t *testing.T) {
	a := button.Now()
	time.Sleep(10 * time.Millisecond)
	if d := button.Now() - a; d < 10*time.Millisecond || d > time.Second {
		t.Errorf("Now advanced by %v over a 10 ms sleep", d)
	}
}

func TestFake(t *testing.T) {
	b := buttontest.New()
	b.Click(time.Second, 200*time.Millisecond)
	b.Press(5 * time.Second)
	b.Close()
	want := []button.Event{{true, time.Second}, {false, 1200 * time.Millisecond}, {true, 5 * time.Second}}
	var got []button.Event
	for e := range b.Events() {
		got = append(got, e)
	}
	if len(got) != len(want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("event %d = %v, want %v", i, got[i], want[i])
		}
	}
	b.Press(time.Hour) // after Close: ignored, no panic
}

// TestGPIOReal reads the real button in the QEMU guest:
// PAIRGUARD_TEST_GPIO_BUTTON=gpiochip0:3, then system_powerdown on the
// monitor within 10 s.
func TestGPIOReal(t *testing.T) {
	spec := os.Getenv("PAIRGUARD_TEST_GPIO_BUTTON")
	if spec == "" {
		t.Skip("set PAIRGUARD_TEST_GPIO_BUTTON=CHIP:LINE to read a real button (this kernel has no gpio-sim)")
	}
	b, err := board.Load("qemu-virt-arm64", map[string]string{"button.input": spec})
	if err != nil {
		t.Fatal(err)
	}
	btn, err := button.Open(b.Button)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { btn.Close() })
	timeout := time.After(10 * time.Second)
	for range 2 {
		select {
		case e := <-btn.Events():
			t.Logf("event %+v (now %v)", e, button.Now())
		case <-timeout:
			t.Fatal("no button event within 10 s")
		}
	}
}
