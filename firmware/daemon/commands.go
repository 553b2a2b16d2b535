package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pairguard/pairguard/firmware/control"
	"github.com/pairguard/pairguard/firmware/engine"
	"github.com/pairguard/pairguard/firmware/frame"
	"github.com/pairguard/pairguard/firmware/logbook"
)

// Report is `pairguard status --json`. The field names are an interface:
// other tools read them (DESIGN.md).
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
	if !d.lastTakeover.At.IsZero() {
		t := d.lastTakeover
		r.LastTakeover = &t
	}
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

// Handle answers a control request; it runs on the connection's goroutine
// and hands the work to the loop.
func (d *Daemon) Handle(ctx context.Context, req control.Request) control.Response {
	if req.Cmd == "capture" {
		return d.handleCapture(ctx, req)
	}
	if req.Cmd == "leds" {
		if err := d.ledsTest(ctx); err != nil {
			return control.Response{Error: "leds test: " + err.Error()}
		}
		return control.Response{OK: true, Text: "walked red, green, amber, failover, all, off\n"}
	}
	if req.Cmd == "resolve" {
		var keep bool
		switch {
		case slices.Contains(req.Args, "--keep-local"):
			keep = true
		case slices.Contains(req.Args, "--discard-local"):
		default:
			return control.Response{Error: "resolve: name the side to keep: --keep-local or --discard-local"}
		}
		if err := d.mirror.Resolve(ctx, keep); err != nil {
			return control.Response{Error: "resolve: " + err.Error()}
		}
		return control.Response{OK: true, Text: "split brain resolved\n"}
	}
	if req.Cmd == "verify" {
		text, err := d.mirror.Verify(ctx)
		if err != nil {
			return control.Response{Error: "verify: " + err.Error()}
		}
		return control.Response{OK: true, Text: text}
	}
	out := make(chan control.Response, 1)
	select {
	case d.ctl <- func() { out <- d.command(req) }:
	case <-ctx.Done():
		return control.Response{Error: "the daemon is stopping"}
	case <-time.After(5 * time.Second):
		return control.Response{Error: "the daemon is busy"}
	}
	return <-out
}

func jsonData(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}

// command runs in the loop.
func (d *Daemon) command(req control.Request) control.Response {
	now := d.mono()
	step := func(c engine.Command) { d.apply(d.eng.Step(now, engine.CommandIssued{Cmd: c})) }
	switch req.Cmd {
	case "status":
		r := d.report()
		return control.Response{OK: true, Text: r.Text(), Data: jsonData(r)}
	case "log":
		n := 20
		for i := 0; i+1 < len(req.Args); i++ {
			if req.Args[i] == "-n" {
				v, err := strconv.Atoi(req.Args[i+1])
				if err != nil || v < 0 {
					return control.Response{Error: "log: -n needs a number"}
				}
				n = v
			}
		}
		entries := d.book.Last(n)
		var b strings.Builder
		for _, e := range entries {
			b.WriteString(e.String())
			b.WriteByte('\n')
		}
		if entries == nil {
			entries = []logbook.Entry{}
		}
		return control.Response{OK: true, Text: b.String(), Data: jsonData(entries)}
	case "swap":
		if d.eng.Role() != engine.RolePrimary {
			return control.Response{Error: "swap: this node is " + d.eng.Role().String() + "; run swap on the primary"}
		}
		step(engine.CmdSwap)
		if !d.eng.Status().Handover {
			last := d.book.Last(1)
			msg := "swap refused"
			if len(last) == 1 {
				msg = last[0].Message
			}
			return control.Response{Error: msg}
		}
		return control.Response{OK: true, Text: "handover to the peer started\n"}
	case "takeover":
		if !slices.Contains(req.Args, "--force") {
			return control.Response{Error: "takeover: add --force: it overrides the split-brain guard and the data state"}
		}
		if d.eng.Role() == engine.RolePrimary {
			return control.Response{OK: true, Text: "already primary\n"}
		}
		step(engine.CmdForceTakeover)
		return control.Response{OK: true, Text: fmt.Sprintf("primary by force, epoch %d\n", d.eng.Status().Epoch)}
	case "ack":
		step(engine.CmdAcknowledge)
		return control.Response{OK: true, Text: "alarms acknowledged\n"}
	case "sync":
		if err := d.mirror.Sync(); err != nil {
			return control.Response{Error: "sync: " + err.Error()}
		}
		return control.Response{OK: true, Text: "resync started\n"}
	}
	return control.Response{Error: fmt.Sprintf("unknown command %q", req.Cmd)}
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

func (d *Daemon) handleCapture(ctx context.Context, req control.Request) control.Response {
	n := 20
	for i := 0; i+1 < len(req.Args); i++ {
		if req.Args[i] == "-n" {
			v, err := strconv.Atoi(req.Args[i+1])
			if err != nil || v < 1 || v > 100000 {
				return control.Response{Error: "capture: -n needs a number between 1 and 100000"}
			}
			n = v
		}
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
