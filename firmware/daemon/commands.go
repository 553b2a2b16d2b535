package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/pairguard/pairguard/firmware/control"
	"github.com/pairguard/pairguard/firmware/engine"
	"github.com/pairguard/pairguard/firmware/frame"
	"github.com/pairguard/pairguard/firmware/logbook"
)

// Report is `pairguard status --json`. The field names are an interface:
// other tools read them (README, "Commands").
type Report struct {
	Mode     string       `json:"mode"`
	Role     string       `json:"role"`
	Node     string       `json:"node"`
	NodeID   string       `json:"node-id"`
	Epoch    uint64       `json:"epoch"`
	InRole   string       `json:"in-role"`
	Software string       `json:"software"`
	Peer     PeerReport   `json:"peer"`
	Data     DataReport   `json:"data"`
	Mirror   MirrorStatus `json:"mirror"`
	Alarms   []string     `json:"alarms"`
	Unacked  bool         `json:"unacknowledged"`
	Faults   []string     `json:"faults"`
	Failover bool         `json:"failover-led"`
	Address  struct {
		Service string `json:"service,omitempty"`
		Held    bool   `json:"held"`
	} `json:"address"`
	Links struct {
		LAN1 bool `json:"lan1"`
		LAN2 bool `json:"lan2"`
	} `json:"links"`
	Witness      *bool               `json:"witness,omitempty"`
	Checks       []CheckReport       `json:"checks,omitempty"`
	Frames       frame.CounterValues `json:"frames"`
	LastTakeover *takeoverInfo       `json:"last-takeover,omitempty"`
	Arbiter      *ArbiterReport      `json:"arbiter,omitempty"` // only with [arbiter] address
	Pairing      *PairingReport      `json:"pairing,omitempty"`
}

// PeerReport is the peer part of Report.
type PeerReport struct {
	State    string `json:"state"`
	Missed   int    `json:"missed"`
	Seq      uint64 `json:"seq"`
	NodeID   string `json:"node-id,omitempty"`
	Role     string `json:"role,omitempty"`
	Epoch    uint64 `json:"epoch"`
	Software string `json:"software,omitempty"`
	LAN1     bool   `json:"lan1"`
	LAN2     bool   `json:"lan2"`
}

// CheckReport is one health check in Report.
type CheckReport struct {
	Name    string `json:"name"`
	Healthy bool   `json:"healthy"`
}

// DataReport is the datastore part of Report.
type DataReport struct {
	State      string `json:"state"`
	Generation string `json:"generation"`
}

func (d *Daemon) report() Report {
	st := d.eng.Status()
	r := Report{
		Mode:     st.Mode.String(),
		Role:     st.Role.String(),
		Node:     d.cfg.NodeName,
		NodeID:   fmt.Sprintf("%016x", d.nodeID),
		Epoch:    st.Epoch,
		InRole:   (d.mono() - st.Since).Round(time.Millisecond).String(),
		Software: Version,
		Data:     DataReport{State: st.Data.String(), Generation: fmt.Sprintf("%016x", st.Generation)},
		Mirror:   d.mirror.Status(),
		Alarms:   []string{},
		Unacked:  st.Unacked,
		Faults:   append([]string{}, st.Faults...),
		Failover: st.FailoverLit,
		Frames:   d.frames.Load(),
	}
	for _, a := range st.Alarms {
		r.Alarms = append(r.Alarms, string(a))
	}
	r.Peer = PeerReport{State: st.Peer.State.String(), Missed: st.Peer.Missed, Seq: st.Peer.Seq, Epoch: st.Peer.Epoch,
		Software: st.Peer.Software, LAN1: st.Peer.LAN1, LAN2: st.Peer.LAN2}
	if st.Peer.NodeID != 0 {
		r.Peer.NodeID = fmt.Sprintf("%016x", st.Peer.NodeID)
		r.Peer.Role = st.Peer.Role.String()
	}
	if r.Mirror.State == "off" {
		r.Mirror.State = st.Mirror.String()
		r.Mirror.Percent = float64(st.Percent)
	}
	if d.cfg.LAN1.Prefix.IsValid() {
		r.Address.Service = d.cfg.LAN1.Prefix.String()
	}
	r.Address.Held = d.holds
	r.Links.LAN1, r.Links.LAN2 = st.LAN1Up, st.LAN2Up
	if d.cfg.LAN1.WitAddr.IsValid() {
		w := st.Witness
		r.Witness = &w
	}
	for _, c := range d.cfg.Checks {
		r.Checks = append(r.Checks, CheckReport{Name: c.Name, Healthy: !d.failing[c.Name]})
	}
	r.Arbiter = d.arbiterReport(st)
	if !d.lastTakeover.At.IsZero() {
		t := d.lastTakeover
		r.LastTakeover = &t
	}
	r.Pairing = d.pairingReport()
	r.Alarms = append(r.Alarms, d.pairingAlarms()...)
	return r
}

// Text renders the report for a terminal of 80 columns.
func (r Report) Text() string {
	var b strings.Builder
	alarms := "none"
	if len(r.Alarms) > 0 {
		alarms = strings.Join(r.Alarms, ", ")
		if r.Unacked {
			alarms += " (not acknowledged)"
		}
	}
	fmt.Fprintf(&b, "node      %s (%s), mode %s\n", r.Node, r.NodeID, r.Mode)
	fmt.Fprintf(&b, "role      %s for %s, epoch %d\n", r.Role, r.InRole, r.Epoch)
	peer := r.Peer.State
	if r.Peer.Role != "" {
		peer += fmt.Sprintf(", %s, epoch %d, missed %d, seq %d", r.Peer.Role, r.Peer.Epoch, r.Peer.Missed, r.Peer.Seq)
	}
	fmt.Fprintf(&b, "peer      %s\n", peer)
	fmt.Fprintf(&b, "paths     lan2 %s, lan1 %s\n", heard(r.Peer.LAN2), heard(r.Peer.LAN1))
	fmt.Fprintf(&b, "data      %s, generation %s\n", r.Data.State, r.Data.Generation)
	mirror := r.Mirror.State
	if r.Mirror.State == "syncing" {
		mirror += fmt.Sprintf(" %.1f%%", r.Mirror.Percent)
		if r.Mirror.ETA != "" {
			mirror += ", eta " + r.Mirror.ETA
		}
	}
	fmt.Fprintf(&b, "mirror    %s\n", mirror)
	if r.Address.Service != "" {
		fmt.Fprintf(&b, "address   %s %s\n", r.Address.Service, map[bool]string{true: "held", false: "not held"}[r.Address.Held])
	}
	if r.Witness != nil {
		fmt.Fprintf(&b, "witness   %s\n", map[bool]string{true: "reachable", false: "unreachable"}[*r.Witness])
	}
	if r.Arbiter != nil {
		fmt.Fprintf(&b, "arbiter   %s\n", r.Arbiter.text(r.NodeID))
	}
	if r.Pairing != nil && r.Pairing.Step != "provisioned" {
		fmt.Fprintf(&b, "pairing   %s\n", r.Pairing.text())
	}
	fmt.Fprintf(&b, "alarms    %s\n", alarms)
	if len(r.Faults) > 0 {
		fmt.Fprintf(&b, "faults    %s\n", strings.Join(r.Faults, ", "))
	}
	f := r.Frames
	fmt.Fprintf(&b, "frames    sent %d, accepted %d\n", f.Sent, f.Accepted)
	fmt.Fprintf(&b, "dropped   forged %d, replayed %d, foreign %d, short %d, version %d\n",
		f.Forged, f.Replayed, f.Foreign, f.Short+f.Malformed+f.Magic+f.Other, f.Version)
	if r.LastTakeover != nil {
		fmt.Fprintf(&b, "takeover  %s: %s\n", r.LastTakeover.At.Local().Format("2006-01-02 15:04:05"), r.LastTakeover.Reason)
	}
	return b.String()
}

func heard(b bool) string {
	if b {
		return "heard"
	}
	return "silent"
}

// handler answers one request of the command table (control.Commands).
type handler func(d *Daemon, ctx context.Context, req control.Request, send func(control.Response) error) control.Response

// handlers is the daemon's dispatch, keyed by the command table's names; a
// test checks that it covers every client command and nothing else.
var handlers = map[string]handler{
	"status":     inLoop((*Daemon).cmdStatus),
	"log":        (*Daemon).cmdLog,
	"is-primary": inLoop((*Daemon).cmdIsPrimary),
	"swap":       inLoop((*Daemon).cmdSwap),
	"takeover":   inLoop((*Daemon).cmdTakeover),
	"ack":        inLoop((*Daemon).cmdAck),
	"sync":       inLoop((*Daemon).cmdSync),
	"verify":     (*Daemon).cmdVerify,
	"resolve":    (*Daemon).cmdResolve,
	"capture":    (*Daemon).handleCapture,
	"leds":       (*Daemon).cmdLeds,
	"pair":       inLoop((*Daemon).cmdPair),
	"unpair":     inLoop((*Daemon).cmdUnpair),
}

// Handle answers a control request; it runs on the connection's goroutine
// and hands the work to the loop.
func (d *Daemon) Handle(ctx context.Context, req control.Request, send func(control.Response) error) control.Response {
	h, ok := handlers[req.Cmd]
	if !ok {
		return control.Response{Error: fmt.Sprintf("unknown command %q", req.Cmd)}
	}
	return h(d, ctx, req, send)
}

// inLoop runs a command in the loop, between two events.
func inLoop(f func(d *Daemon, req control.Request) control.Response) handler {
	return func(d *Daemon, ctx context.Context, req control.Request, _ func(control.Response) error) control.Response {
		out := make(chan control.Response, 1)
		select {
		case d.ctl <- func() { out <- f(d, req) }:
		case <-ctx.Done():
			return control.Response{Error: "the daemon is stopping"}
		case <-time.After(5 * time.Second):
			return control.Response{Error: "the daemon is busy"}
		}
		return <-out
	}
}

func jsonData(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}

func (d *Daemon) cmdStatus(control.Request) control.Response {
	r := d.report()
	return control.Response{OK: true, Text: r.Text(), Data: jsonData(r)}
}

// IsPrimary is the answer to `is-primary`.
type IsPrimary struct {
	Primary bool   `json:"primary"`
	Role    string `json:"role"`
}

func (d *Daemon) cmdIsPrimary(control.Request) control.Response {
	role := d.eng.Role()
	// Primary means primary in the engine and holding the address when one
	// is configured (not between a takeover and its claim).
	p := IsPrimary{Primary: role == engine.RolePrimary && (d.holds || !d.cfg.LAN1.Prefix.IsValid()), Role: role.String()}
	return control.Response{OK: true, Text: p.Role + "\n", Data: jsonData(p)}
}

func (d *Daemon) cmdSwap(control.Request) control.Response {
	if d.eng.Role() != engine.RolePrimary {
		return control.Response{Error: "swap: this node is " + d.eng.Role().String() + "; run swap on the primary"}
	}
	d.apply(d.eng.Step(d.mono(), engine.CommandIssued{Cmd: engine.CmdSwap}))
	if !d.eng.Status().Handover {
		last := d.book.Last(1)
		msg := "swap refused"
		if len(last) == 1 {
			msg = last[0].Message
		}
		return control.Response{Error: msg}
	}
	return control.Response{OK: true, Text: "handover to the peer started\n"}
}

func (d *Daemon) cmdTakeover(req control.Request) control.Response {
	if !req.Force {
		return control.Response{Error: "takeover: add --force: it overrides the split-brain guard and the data state"}
	}
	if d.eng.Role() == engine.RolePrimary {
		return control.Response{OK: true, Text: "already primary\n"}
	}
	d.apply(d.eng.Step(d.mono(), engine.CommandIssued{Cmd: engine.CmdForceTakeover}))
	return control.Response{OK: true, Text: fmt.Sprintf("primary by force, epoch %d\n", d.eng.Status().Epoch)}
}

func (d *Daemon) cmdAck(control.Request) control.Response {
	d.apply(d.eng.Step(d.mono(), engine.CommandIssued{Cmd: engine.CmdAcknowledge}))
	return control.Response{OK: true, Text: "alarms acknowledged\n"}
}

func (d *Daemon) cmdSync(control.Request) control.Response {
	if err := d.mirror.Sync(); err != nil {
		return control.Response{Error: "sync: " + err.Error()}
	}
	return control.Response{OK: true, Text: "resync started\n"}
}

func (d *Daemon) cmdVerify(ctx context.Context, _ control.Request, _ func(control.Response) error) control.Response {
	text, err := d.mirror.Verify(ctx)
	if err != nil {
		return control.Response{Error: "verify: " + err.Error()}
	}
	return control.Response{OK: true, Text: text}
}

func (d *Daemon) cmdResolve(ctx context.Context, req control.Request, _ func(control.Response) error) control.Response {
	if req.Keep != control.KeepLocal && req.Keep != control.KeepPeer {
		return control.Response{Error: "resolve: name the side to keep: --keep-local or --discard-local"}
	}
	if err := d.mirror.Resolve(ctx, req.Keep == control.KeepLocal); err != nil {
		return control.Response{Error: "resolve: " + err.Error()}
	}
	return control.Response{OK: true, Text: "split brain resolved\n"}
}

func (d *Daemon) cmdLeds(ctx context.Context, _ control.Request, _ func(control.Response) error) control.Response {
	if err := d.ledsTest(ctx); err != nil {
		return control.Response{Error: "leds test: " + err.Error()}
	}
	return control.Response{OK: true, Text: "walked red, green, amber, failover, all, off\n"}
}

// cmdLog answers `log`: the newest entries, then with Follow every new
// entry, role change and alarm change until the client hangs up or the
// daemon stops. The logbook is safe for concurrent use: no loop needed.
func (d *Daemon) cmdLog(ctx context.Context, req control.Request, send func(control.Response) error) control.Response {
	var f *follower
	if req.Follow {
		// Subscribe before reading the last entries, so none falls
		// between; one may show twice.
		if f = d.follow.add(); f == nil {
			return control.Response{Error: "the daemon is stopping"}
		}
		defer d.follow.remove(f)
	}
	entries := d.book.Last(req.N)
	if entries == nil {
		entries = []logbook.Entry{}
	}
	if !req.Follow {
		var b strings.Builder
		for _, e := range entries {
			b.WriteString(e.String())
			b.WriteByte('\n')
		}
		return control.Response{OK: true, Text: b.String(), Data: jsonData(entries)}
	}
	for _, e := range entries {
		ev := FollowEvent{Type: "entry", Time: e.Time, Entry: &e}
		if err := send(control.Response{OK: true, Text: ev.Text(), Data: jsonData(ev)}); err != nil {
			return control.Response{Error: err.Error()}
		}
	}
	for {
		select {
		case ev, ok := <-f.ch:
			if !ok {
				return control.Response{OK: true, Text: "the daemon stopped\n"}
			}
			if err := send(control.Response{OK: true, Text: ev.Text(), Data: jsonData(ev)}); err != nil {
				return control.Response{Error: err.Error()}
			}
		case <-ctx.Done():
			return control.Response{OK: true}
		}
	}
}

// capture collects frames seen by the daemon for `pairguard capture`.
type capture struct {
	want   int
	frames []CapturedFrame
	done   chan struct{}
}

// CapturedFrame is one frame of a capture, with its Ethernet source.
type CapturedFrame struct {
	Time    time.Time `json:"time"`
	Path    string    `json:"path"`
	Src     string    `json:"src"`
	Out     bool      `json:"out"`
	Payload []byte    `json:"payload"`
}

func (d *Daemon) feedCaptures(path engine.Path, src net.HardwareAddr, payload []byte, out bool) {
	if len(d.captures) == 0 {
		return
	}
	keep := d.captures[:0]
	for _, c := range d.captures {
		c.frames = append(c.frames, CapturedFrame{Time: time.Now(), Path: path.String(), Src: src.String(), Out: out, Payload: append([]byte(nil), payload...)})
		if len(c.frames) >= c.want {
			close(c.done)
			continue
		}
		keep = append(keep, c)
	}
	d.captures = keep
	d.capturing.Store(len(keep) > 0)
}

func (d *Daemon) handleCapture(ctx context.Context, req control.Request, _ func(control.Response) error) control.Response {
	n := req.N
	if n < 1 || n > control.MaxCapture {
		return control.Response{Error: fmt.Sprintf("capture: -n needs a number between 1 and %d", control.MaxCapture)}
	}
	c := &capture{want: n, done: make(chan struct{})}
	select {
	case d.ctl <- func() { d.captures = append(d.captures, c); d.capturing.Store(true) }:
	case <-ctx.Done():
		return control.Response{Error: "the daemon is stopping"}
	}
	timeout := time.After(60 * time.Second)
	select {
	case <-c.done:
	case <-timeout:
	case <-ctx.Done():
	}
	got := make(chan []CapturedFrame, 1)
	select {
	case d.ctl <- func() {
		d.captures = slices.DeleteFunc(d.captures, func(x *capture) bool { return x == c })
		d.capturing.Store(len(d.captures) > 0)
		got <- c.frames
	}:
	case <-ctx.Done():
		return control.Response{Error: "the daemon is stopping"}
	}
	frames := <-got
	return control.Response{OK: true, Text: fmt.Sprintf("%d frames\n", len(frames)), Data: jsonData(frames)}
}
