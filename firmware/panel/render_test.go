package panel_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pairguard/pairguard/drivers/button/buttontest"
	"github.com/pairguard/pairguard/drivers/led/ledtest"
	"github.com/pairguard/pairguard/firmware/engine"
	"github.com/pairguard/pairguard/firmware/panel"
)

const ms = time.Millisecond

// shared is the daemon's published state, as the renderer reads it.
type shared struct {
	mu sync.Mutex
	s  panel.State
}

func (s *shared) get() panel.State     { s.mu.Lock(); defer s.mu.Unlock(); return s.s }
func (s *shared) set(st panel.State)   { s.mu.Lock(); defer s.mu.Unlock(); s.s = st }
func newShared(st panel.State) *shared { return &shared{s: st} }

// logbuf is a goroutine-safe log sink.
type logbuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logbuf) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *logbuf) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

type fakes struct{ red, green, amber, failover *ledtest.LED }

func newFakes(amber bool) (fakes, panel.Outputs) {
	f := fakes{red: ledtest.New("red"), green: ledtest.New("green"), failover: ledtest.New("failover")}
	outs := panel.Outputs{panel.ChannelRoleRed: f.red, panel.ChannelRoleGreen: f.green, panel.ChannelFailover: f.failover}
	if amber {
		f.amber = ledtest.New("amber")
		outs[panel.ChannelRoleAmber] = f.amber
	}
	return f, outs
}

// change is a timeline entry relative to the bubble's start.
type change struct {
	at time.Duration
	on bool
}

func rel(start time.Time, tl []ledtest.Change) []change {
	out := make([]change, len(tl))
	for i, c := range tl {
		out[i] = change{c.At.Sub(start), c.On}
	}
	return out
}

func equal(a, b []change) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// levelAt replays a timeline: the level the LED had at t.
func levelAt(start time.Time, tl []ledtest.Change, t time.Duration) bool {
	on := false
	for _, c := range tl {
		if c.At.Sub(start) <= t {
			on = c.On
		}
	}
	return on
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

var (
	primaryAlone  = panel.State{Role: engine.RolePrimary, Peer: engine.PeerDown, Mirror: engine.MirrorOff}
	primaryInSync = panel.State{Role: engine.RolePrimary, Peer: engine.PeerUp, Mirror: engine.MirrorInSync}
	secondaryOK   = panel.State{Role: engine.RoleSecondary, Peer: engine.PeerUp, Mirror: engine.MirrorInSync}
)

func TestRendererTimeline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		f, outs := newFakes(false)
		st := newShared(primaryAlone)
		r := panel.NewRenderer(outs, st.get, discard())
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- r.Run(ctx) }()

		time.Sleep(2025 * ms)
		alarm := primaryAlone
		alarm.Alarm, alarm.FailoverLit = true, true
		st.set(alarm)
		time.Sleep(300 * ms) // to 2325 ms
		synctest.Wait()

		// Green slow blink from 0, only changes recorded, then off at the
		// first tick after the alarm.
		wantGreen := []change{{0, true}, {500 * ms, false}, {1000 * ms, true}, {1500 * ms, false}, {2000 * ms, true}, {2050 * ms, false}}
		// Red fast blink, phase from the renderer's start: 2050 on, 2100 off, 2200 on, 2300 off.
		wantRed := []change{{0, false}, {2050 * ms, true}, {2100 * ms, false}, {2200 * ms, true}, {2300 * ms, false}}
		wantFailover := []change{{0, false}, {2050 * ms, true}}
		for _, c := range []struct {
			name string
			led  *ledtest.LED
			want []change
		}{{"green", f.green, wantGreen}, {"red", f.red, wantRed}, {"failover", f.failover, wantFailover}} {
			if got := rel(start, c.led.Timeline()); !equal(got, c.want) {
				t.Errorf("%s timeline:\n got %v\nwant %v", c.name, got, c.want)
			}
		}

		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
		for _, l := range []*ledtest.LED{f.red, f.green, f.failover} {
			if l.On() {
				t.Errorf("%v still on after Run returned", l)
			}
		}
	})
}

func TestRendererAmber(t *testing.T) {
	for _, separate := range []bool{false, true} {
		synctest.Test(t, func(t *testing.T) {
			start := time.Now()
			f, outs := newFakes(separate)
			st := newShared(secondaryOK)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			go panel.NewRenderer(outs, st.get, discard()).Run(ctx)
			time.Sleep(5 * time.Second)
			synctest.Wait()
			want := map[*ledtest.LED]bool{f.red: !separate, f.green: !separate}
			if separate {
				want[f.amber] = true
			}
			for l, on := range want {
				if got := rel(start, l.Timeline()); !equal(got, []change{{0, on}}) {
					t.Errorf("separate amber %v: %v timeline %v, want one set to %v", separate, l, got, on)
				}
			}
		})
	}
}

// A failing LED is logged once, the others keep working, and recovery is
// logged.
func TestRendererFailingLED(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		f, outs := newFakes(false)
		f.green.Fail(errors.New("EBUSY"))
		delete(outs, panel.ChannelFailover) // a board without a failover LED
		var logs logbuf
		log := slog.New(slog.NewTextHandler(&logs, nil))
		st := newShared(primaryAlone)
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go panel.NewRenderer(outs, st.get, log).Run(ctx)

		time.Sleep(3025 * ms)
		synctest.Wait()
		if n := strings.Count(logs.String(), "cannot set LED"); n != 1 {
			t.Errorf("%d warnings, want 1:\n%s", n, logs.String())
		}
		if !strings.Contains(logs.String(), "led=role-green") {
			t.Errorf("warning does not name the LED: %s", logs.String())
		}
		f.green.Fail(nil)
		st.set(panel.State{Role: engine.RoleFault})
		time.Sleep(1000 * ms) // to 4025
		synctest.Wait()
		if !strings.Contains(logs.String(), "works again") {
			t.Errorf("no recovery logged: %s", logs.String())
		}
		if got := rel(start, f.red.Timeline()); !equal(got, []change{{0, false}, {3050 * ms, true}}) {
			t.Errorf("red timeline %v", got)
		}
		if f.failover.Timeline() != nil {
			t.Error("unfitted failover LED was set")
		}
	})
}

func TestWalkTest(t *testing.T) {
	for _, separate := range []bool{false, true} {
		synctest.Test(t, func(t *testing.T) {
			start := time.Now()
			f, outs := newFakes(separate)
			if err := panel.WalkTest(t.Context(), outs, time.Second); err != nil {
				t.Fatal(err)
			}
			if el := time.Since(start); el != 5*time.Second {
				t.Errorf("walk took %v", el)
			}
			// Step by step: red, green, amber, failover, all.
			steps := []map[*ledtest.LED]bool{
				{f.red: true},
				{f.green: true},
				{f.red: !separate, f.green: !separate, f.amber: separate},
				{f.failover: true},
				{f.red: true, f.green: true, f.amber: true, f.failover: true},
			}
			for i, lit := range steps {
				at := time.Duration(i)*time.Second + 500*ms
				for _, l := range []*ledtest.LED{f.red, f.green, f.amber, f.failover} {
					if l == nil {
						continue
					}
					if got := levelAt(start, l.Timeline(), at); got != lit[l] {
						t.Errorf("separate %v, step %d: %v is %v", separate, i, l, got)
					}
				}
			}
			for _, l := range []*ledtest.LED{f.red, f.green, f.amber, f.failover} {
				if l != nil && l.On() {
					t.Errorf("%v on after the walk", l)
				}
			}
		})
	}
}

func TestWalkTestErrorsAndCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, outs := newFakes(false)
		f.failover.Fail(errors.New("gone"))
		err := panel.WalkTest(t.Context(), outs, 100*ms)
		if err == nil || strings.Count(err.Error(), "failover") != 1 || !strings.Contains(err.Error(), "gone") {
			t.Errorf("WalkTest error = %v", err)
		}
		f.failover.Fail(nil)

		ctx, cancel := context.WithCancel(t.Context())
		go func() { time.Sleep(1500 * ms); cancel() }()
		if err := panel.WalkTest(ctx, outs, time.Second); !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled walk = %v", err)
		}
		if f.green.On() || f.red.On() {
			t.Error("LEDs left on after a cancelled walk")
		}
	})
}

// The renderer pauses for a walk test and then shows the state again.
func TestRendererWalkTest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		f, outs := newFakes(false)
		st := newShared(primaryInSync)
		r := panel.NewRenderer(outs, st.get, discard())
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { r.Run(ctx); close(done) }()
		time.Sleep(1025 * ms)
		if err := r.WalkTest(t.Context(), 200*ms); err != nil {
			t.Fatal(err)
		}
		walkEnd := time.Since(start)
		synctest.Wait()
		if !f.green.On() || f.red.On() {
			t.Error("display not restored after the walk")
		}
		// During the walk the renderer did not touch the LEDs: at 1025+100 ms
		// (red step) green is off although the state says green solid.
		if levelAt(start, f.green.Timeline(), 1125*ms) || !levelAt(start, f.red.Timeline(), 1125*ms) {
			t.Error("renderer fought the walk test")
		}
		if walkEnd != 1025*ms+5*200*ms {
			t.Errorf("walk ended at %v", walkEnd)
		}
		cancel()
		<-done
		if err := r.WalkTest(t.Context(), ms); err == nil {
			t.Error("WalkTest on a stopped renderer succeeded")
		}
	})
}

// The button's fake feeds the decoder the way the daemon does.
func TestDecoderWithFakeButton(t *testing.T) {
	b := buttontest.New()
	b.Click(time.Second, 200*ms)
	b.Click(5*time.Second, 4*time.Second)
	b.Click(20*time.Second, 9*time.Second)
	b.Click(40*time.Second, 1500*ms)
	b.Close()
	d := panel.NewDecoder(panel.DefaultTiming)
	var got []panel.Action
	for e := range b.Events() {
		if a := d.Edge(e.Pressed, e.Time); a != panel.ActionNone {
			got = append(got, a)
		}
	}
	want := []panel.Action{panel.ActionAcknowledge, panel.ActionSync, panel.ActionSwap}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Errorf("actions %v, want %v", got, want)
	}
}
