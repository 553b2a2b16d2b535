package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/pairguard/pairguard/board"
	"github.com/pairguard/pairguard/drivers/button"
	"github.com/pairguard/pairguard/drivers/led"
	"github.com/pairguard/pairguard/drivers/watchdog"
	"github.com/pairguard/pairguard/firmware/engine"
	"github.com/pairguard/pairguard/firmware/pairing"
	"github.com/pairguard/pairguard/firmware/panel"
)

// Panel is the front panel and the watchdog as the daemon drives them. Any
// part may be missing: the daemon runs on without it.
type Panel struct {
	LEDs     panel.Outputs
	Button   button.Button        // nil: none
	Watchdog watchdog.Watchdog    // nil: none
	WDEvery  time.Duration        // feed period
	Now      func() time.Duration // the button's clock (button.Now)
}

// OpenPanel opens a board's LEDs, button and watchdog. A missing or busy
// line is a warning: the panel runs without it.
func OpenPanel(b *board.Board, wdDevice string, wdTimeout time.Duration, log *slog.Logger) (*Panel, []func() error) {
	p := &Panel{LEDs: panel.Outputs{}, Now: button.Now}
	var closers []func() error
	for ch, o := range panel.Wiring(b.LEDs) {
		l, err := led.Open(o)
		if errors.Is(err, led.ErrNotFitted) {
			continue
		}
		if err != nil {
			log.Warn("front-panel LED unavailable; running without it", "led", ch, "output", o, "err", err)
			continue
		}
		p.LEDs[ch] = l
		closers = append(closers, l.Close)
	}
	if btn, err := button.Open(b.Button); err == nil {
		p.Button = btn
		closers = append(closers, btn.Close)
	} else if !errors.Is(err, button.ErrNotFitted) {
		log.Warn("front-panel button unavailable; running without it", "err", err)
	}
	if wdDevice != "" {
		wd, err := watchdog.Open(wdDevice, wdTimeout)
		if err != nil {
			log.Warn("watchdog unavailable; no self-fencing", "device", wdDevice, "err", err)
		} else {
			p.Watchdog = wd
			p.WDEvery = wd.Timeout() / 3
			log.Info("watchdog armed", "device", wdDevice, "timeout", wd.Timeout())
		}
	}
	return p, closers
}

// panelState maps the engine's state to what the front panel shows. Without
// a datastore there is nothing to mirror, so a formed pair counts as in sync.
func (d *Daemon) panelState(held panel.Action) panel.State {
	st := d.eng.Status()
	mirror := st.Mirror
	if d.cfg.Datastore == nil && mirror == engine.MirrorOff {
		mirror = engine.MirrorInSync
	}
	return panel.State{
		Role:        st.Role,
		Peer:        st.Peer.State,
		Mirror:      mirror,
		Alarm:       st.Unacked,
		Fault:       st.Role == engine.RoleFault,
		FailoverLit: st.FailoverLit,
		Held:        held,
		Pairing:     d.panelPairing(),
	}
}

// frontPanel is the daemon's running front panel.
type frontPanel struct {
	p        *Panel
	renderer *panel.Renderer
	decoder  *panel.Decoder
	state    atomic.Pointer[panel.State]
	lastFeed time.Duration
	fenced   bool
}

func (d *Daemon) startPanel(ctx context.Context) {
	if d.panelDev == nil {
		return
	}
	fp := &frontPanel{p: d.panelDev, decoder: panel.NewDecoder(panel.DefaultTiming)}
	s := d.panelState(panel.ActionNone)
	fp.state.Store(&s)
	if len(fp.p.LEDs) > 0 {
		fp.renderer = panel.NewRenderer(fp.p.LEDs, func() panel.State { return *fp.state.Load() }, d.log)
		d.wg.Add(1)
		go func() { defer d.wg.Done(); fp.renderer.Run(ctx) }()
	}
	d.panel = fp
}

// buttonEvents returns the button's channel, or nil.
func (d *Daemon) buttonEvents() <-chan button.Event {
	if d.panel == nil || d.panel.p.Button == nil {
		return nil
	}
	return d.panel.p.Button.Events()
}

// publishPanel refreshes the LEDs' state and feeds the watchdog; it runs
// in the loop after every step.
func (d *Daemon) publishPanel() {
	fp := d.panel
	if fp == nil {
		return
	}
	held := panel.ActionNone
	if fp.p.Now != nil && fp.decoder.Held() {
		held = fp.decoder.Pending(fp.p.Now())
	}
	s := d.panelState(held)
	fp.state.Store(&s)
	d.feedWatchdog()
}

// feedWatchdog feeds the watchdog while the node is healthy. A node that
// failed to release the service address when it had to stops feeding, so
// the board reboots instead of holding the address as a zombie primary.
func (d *Daemon) feedWatchdog() {
	fp := d.panel
	if fp == nil || fp.p.Watchdog == nil {
		return
	}
	if d.releaseErr != nil {
		if !fp.fenced {
			fp.fenced = true
			d.log.Error("cannot release the service address: no longer feeding the watchdog", "err", d.releaseErr)
			d.logbook("fence", "self-fencing by watchdog: the service address could not be released")
		}
		return
	}
	now := d.mono()
	if now-fp.lastFeed < fp.p.WDEvery {
		return
	}
	fp.lastFeed = now
	if err := fp.p.Watchdog.Feed(); err != nil {
		d.log.Warn("watchdog feed failed", "err", err)
	}
}

// pressed handles a button edge.
func (d *Daemon) pressed(ev button.Event) {
	act := d.panel.decoder.Edge(ev.Pressed, ev.Time)
	switch act {
	case panel.ActionAcknowledge:
		d.apply(d.eng.Step(d.mono(), engine.CommandIssued{Cmd: engine.CmdAcknowledge}))
	case panel.ActionSync:
		if err := d.mirror.Sync(); err != nil {
			d.logbook("button", "sync: "+err.Error())
		}
	case panel.ActionSwap:
		d.logbook("button", "swap requested with the button")
		d.apply(d.eng.Step(d.mono(), engine.CommandIssued{Cmd: engine.CmdSwap}))
	case panel.ActionApprove:
		d.logbook("button", "approve pressed")
		if err := d.pairStep(pairing.Accept{}); err != nil {
			d.logbook("button", "approve: "+err.Error())
		}
	}
}

// ledsTest walks every LED; it runs on the control connection's goroutine.
func (d *Daemon) ledsTest(ctx context.Context) error {
	if d.panel == nil || d.panel.renderer == nil {
		return fmt.Errorf("this node has no front-panel LEDs (board %q)", d.cfg.Board)
	}
	return d.panel.renderer.WalkTest(ctx, 500*time.Millisecond)
}

// closePanel disarms the watchdog with the magic close on a clean stop.
func (d *Daemon) closePanel() {
	if d.panel != nil && d.panel.p.Watchdog != nil && !d.panel.fenced {
		if err := d.panel.p.Watchdog.Close(); err != nil {
			d.log.Warn("watchdog close failed", "err", err)
		}
	}
}
