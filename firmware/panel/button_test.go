package panel

import (
	"testing"
	"time"
)

// clock is the fake clock the decoder tests advance.
type clock struct{ now time.Duration }

func (c *clock) after(d time.Duration) time.Duration { c.now += d; return c.now }

func TestDecoderActions(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		held    time.Duration
		pairing bool
		want    Action
	}{
		{30 * ms, false, ActionAcknowledge},
		{999 * ms, false, ActionAcknowledge},
		{30 * ms, true, ActionApprove},
		{999 * ms, true, ActionApprove},
		{time.Second, false, ActionNone},
		{2999 * ms, false, ActionNone},
		{2999 * ms, true, ActionApprove},
		{3 * time.Second, false, ActionSync},
		{7999 * ms, true, ActionSync},
		{8 * time.Second, false, ActionSwap},
		{19999 * ms, false, ActionSwap},
		{20 * time.Second, false, ActionNone},
		{10 * time.Minute, false, ActionNone},
	} {
		d := NewDecoder(DefaultTiming)
		d.SetPairing(tc.pairing)
		c := &clock{now: 5 * time.Hour}
		if a := d.Edge(true, c.now); a != ActionNone {
			t.Errorf("press returned %v", a)
		}
		if !d.Held() {
			t.Error("not held after a press")
		}
		if got := d.Edge(false, c.after(tc.held)); got != tc.want {
			t.Errorf("held %v pairing %v: %v, want %v", tc.held, tc.pairing, got, tc.want)
		}
		if d.Held() {
			t.Error("held after the release")
		}
	}
}

// TestDecoderPending follows one long press: what a release would do at
// each moment, as the failover LED shows it.
func TestDecoderPending(t *testing.T) {
	d := NewDecoder(DefaultTiming)
	c := &clock{}
	if p := d.Pending(c.now); p != ActionNone {
		t.Errorf("pending with the button up: %v", p)
	}
	d.Edge(true, c.after(time.Second))
	for _, step := range []struct {
		after time.Duration
		want  Action
	}{
		{0, ActionAcknowledge},
		{time.Second, ActionNone},
		{2 * time.Second, ActionSync},
		{5 * time.Second, ActionSwap},
		{12 * time.Second, ActionNone},
	} {
		if got := d.Pending(c.after(step.after)); got != step.want {
			t.Errorf("at %v: pending %v, want %v", c.now, got, step.want)
		}
	}
	// Pending does not consume the press.
	if got := d.Edge(false, c.now); got != ActionNone {
		t.Errorf("release after 20 s: %v", got)
	}
}

func TestDecoderLostEdges(t *testing.T) {
	d := NewDecoder(DefaultTiming)
	c := &clock{}
	// A release without a press is ignored.
	if a := d.Edge(false, c.after(time.Second)); a != ActionNone {
		t.Errorf("lone release: %v", a)
	}
	// A second press restarts the press.
	d.Edge(true, c.after(time.Second))
	d.Edge(true, c.after(5*time.Second))
	if a := d.Edge(false, c.after(100*time.Millisecond)); a != ActionAcknowledge {
		t.Errorf("after a lost release: %v, want acknowledge", a)
	}
	// Time going backwards does nothing.
	d.Edge(true, 10*time.Second)
	if a := d.Edge(false, 9*time.Second); a != ActionNone {
		t.Errorf("negative hold: %v", a)
	}
	// Closing the pairing window brings acknowledge back.
	d.SetPairing(true)
	d.SetPairing(false)
	d.Edge(true, c.after(time.Second))
	if a := d.Edge(false, c.after(time.Millisecond)); a != ActionAcknowledge {
		t.Errorf("after the window: %v", a)
	}
}

func TestTimingValidate(t *testing.T) {
	if err := DefaultTiming.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := DefaultTiming
	bad.SwapHold = bad.SyncHold
	if bad.Validate() == nil {
		t.Error("sync == swap accepted")
	}
	defer func() {
		if recover() == nil {
			t.Error("NewDecoder accepted zero timing")
		}
	}()
	NewDecoder(Timing{})
}
