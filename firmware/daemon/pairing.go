package daemon

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/pairguard/pairguard/drivers/rawether"
	"github.com/pairguard/pairguard/firmware/config"
	"github.com/pairguard/pairguard/firmware/control"
	"github.com/pairguard/pairguard/firmware/engine"
	"github.com/pairguard/pairguard/firmware/frame"
	"github.com/pairguard/pairguard/firmware/pairing"
	"github.com/pairguard/pairguard/firmware/panel"
	"github.com/pairguard/pairguard/sdcard"
)

// The teach-in, wired: the pairing machine (package pairing) runs in the
// loop like the engine. A node whose config has neither pair-key nor
// pair-key-file is taught in: it loads its pair record from the state dir
// at start (then it is paired, with the record's key), or starts unpaired:
// no heartbeats, never eligible (engine.Config.Unpaired), alarm unpaired.
// Its failover-line socket passes every frame with the magic (no pair id
// in the kernel filter: the key can change while running, and frames of
// another pair are counted as foreign by Decode).
//
// The machine's actions are carried out in order (package pairing,
// "Usage"): Persist writes the record durably (stateDir.write:
// write, fsync, rename, fsync of the directory) before this side's accept
// goes out; once it is on disk the derived pair key replaces the missing
// one live and the engine may become primary, and the mirror's TLS pins
// the peer's identity key at once (setupMirrorIdentity). A spare whose
// adopted settings differ from its own config, a node with
// lan1.virtual-mac and a node with an arbiter restart internally
// (ErrRestart) when they are not primary, so that the service address,
// the timers, the MAC and the arbiter's key come from the pair; a primary
// (a survivor teaching in a replacement) adopts them at its next start.

// ErrRestart is returned by Run when the daemon stopped to start again
// with its new pair record (a spare adopting the main's settings); the
// caller opens it again.
var ErrRestart = errors.New("daemon: restart to adopt the pair's settings")

const (
	recordFile   = "pair.record"
	identityFile = "identity.key"
	// pairGrace: after pairing, a node still takes pairing frames this
	// long, to repeat its accept for a peer that missed it.
	pairGrace = 30 * time.Second
	// alarmUnpaired and alarmSettings are the daemon's pairing alarms.
	alarmUnpaired = "unpaired"
	alarmSettings = "settings-mismatch"
)

// teachIn reports whether cfg leaves the pair key to the teach-in.
func teachIn(cfg *config.Config) bool {
	mode, _ := engine.ParseMode(cfg.Mode)
	return cfg.PairKey == "" && cfg.PairKeyFile == "" && (mode == engine.ModeMain || mode == engine.ModeSpare)
}

// withPairRecord returns cfg as the node runs it: for a taught-in node with
// a pair record, a copy with the record's pair key and, on a spare, the
// main's pair-level settings. rec is nil when there is none. A damaged
// record is an error wrapping pairing.ErrRecord, returned with cfg as it
// is: the node runs unpaired and says why; it never guesses.
func withPairRecord(cfg *config.Config) (*config.Config, *pairing.Record, error) {
	if !teachIn(cfg) {
		return cfg, nil, nil
	}
	b, err := os.ReadFile(stateDir(cfg.StateDir).path(recordFile))
	if errors.Is(err, os.ErrNotExist) {
		return cfg, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("daemon: pair record: %w", err)
	}
	var rec pairing.Record
	if err := rec.UnmarshalBinary(b); err != nil {
		return cfg, nil, fmt.Errorf("daemon: %s: %w (teach the pair in again)", recordFile, err)
	}
	out := cfg
	if rec.Role == pairing.RoleSpare {
		if out, err = adopt(cfg, rec.Settings); err != nil {
			return nil, nil, fmt.Errorf("daemon: the main's settings in %s: %w", recordFile, err)
		}
	} else {
		c := *cfg
		out = &c
	}
	out.Key = append([]byte(nil), rec.PairKey[:]...)
	return out, &rec, nil
}

// ErrUnpaired: a taught-in node has no pair record yet.
var ErrUnpaired = errors.New("this node is not paired yet: teach the pair in (pairguard pair begin on the main, pair join on the spare) or set pair-key")

// PairKey returns the pair key a node of cfg runs with: pair-key (or
// pair-key-file) of the config, or, on a taught-in node, the key of the
// pair record in the state dir. Without a record it returns ErrUnpaired; a
// damaged record is an error wrapping pairing.ErrRecord.
func PairKey(cfg *config.Config) ([]byte, error) {
	if !teachIn(cfg) {
		if len(cfg.Key) == 0 {
			return nil, fmt.Errorf("mode %s has no pair key", cfg.Mode)
		}
		return cfg.Key, nil
	}
	c, rec, err := withPairRecord(cfg)
	switch {
	case err != nil:
		return nil, err
	case rec == nil:
		return nil, ErrUnpaired
	}
	return c.Key, nil
}

// settingsOf returns the pair-level settings of a config.
func settingsOf(cfg *config.Config) pairing.Settings {
	hb := cfg.Heartbeat
	s := pairing.Settings{
		ServiceAddress:  cfg.LAN1.Prefix,
		ServiceAddress6: cfg.LAN1.Prefix6,
		Interval:        hb.Interval.Duration,
		Missed:          hb.Missed,
		FailoverTime:    hb.FailoverTime.Duration,
		ConnectionWait:  hb.ConnectionWait.Duration,
		LAN1Interval:    hb.LAN1Interval.Duration,
		Recovery:        cfg.Recovery,
		OnLineLoss:      cfg.OnLineLoss,
	}
	if ds := cfg.Datastore; ds != nil {
		s.DatastoreMode, s.ScanInterval, s.Replication = ds.Mode, ds.Interval.Duration, ds.Replication
	}
	return s
}

// adopt returns a copy of the spare's cfg with the main's settings s,
// validated again.
func adopt(cfg *config.Config, s pairing.Settings) (*config.Config, error) {
	c := *cfg
	if s.ServiceAddress.IsValid() {
		c.LAN1.ServiceAddress = s.ServiceAddress.String()
	}
	if s.ServiceAddress6.IsValid() {
		c.LAN1.ServiceAddr6 = s.ServiceAddress6.String()
	}
	hb := &c.Heartbeat
	set := func(d *config.Duration, v time.Duration) {
		if v > 0 {
			d.Duration = v
		}
	}
	set(&hb.Interval, s.Interval)
	set(&hb.FailoverTime, s.FailoverTime)
	set(&hb.ConnectionWait, s.ConnectionWait)
	set(&hb.LAN1Interval, s.LAN1Interval)
	if s.Missed > 0 {
		hb.Missed = s.Missed
	}
	if s.Recovery != "" {
		c.Recovery = s.Recovery
	}
	if s.OnLineLoss != "" {
		c.OnLineLoss = s.OnLineLoss
	}
	if cfg.Datastore != nil {
		ds := *cfg.Datastore
		if s.DatastoreMode != "" {
			ds.Mode = s.DatastoreMode
		}
		set(&ds.Interval, s.ScanInterval)
		if s.Replication != "" {
			ds.Replication = s.Replication
		}
		c.Datastore = &ds
	}
	// The probe time follows the failover time when the spare's config
	// did not set it.
	c.LAN1.ProbeTime.Duration = min(c.LAN1.ProbeTime.Duration, hb.FailoverTime.Duration/5)
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// identity returns the node's ed25519 identity key, created at first use
// and kept in the state dir (the seed, 0600).
func (d stateDir) identity() (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(d.path(identityFile))
	switch {
	case err == nil && len(b) == ed25519.SeedSize:
		return ed25519.NewKeyFromSeed(b), nil
	case err == nil:
		return nil, fmt.Errorf("state: %s: %d bytes, want %d", d.path(identityFile), len(b), ed25519.SeedSize)
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("state: %w", err)
	}
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		return nil, err
	}
	if err := d.write(identityFile, seed); err != nil {
		return nil, err
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// forget removes the pair record durably.
func (d stateDir) forget() error {
	if err := os.Remove(d.path(recordFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("state: %w", err)
	}
	dir, err := os.Open(string(d))
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	defer dir.Close()
	return dir.Sync()
}

// pairState is the daemon's side of the teach-in.
type pairState struct {
	m        *pairing.Machine
	id       ed25519.PrivateKey // this node's identity key (the mirror's TLS once paired)
	own      pairing.Settings   // this node's own pair-level settings (config)
	macs     map[uint64]net.HardwareAddr
	buf      []byte
	restart  bool   // a spare adopted settings that need a restart
	mismatch string // the key in which the config file differs from the record
	damaged  string // why the pair record could not be read (the node runs unpaired)
}

// setupPairing prepares the pairing machine of a taught-in node; cfg is
// the config as withPairRecord returned it, own the file's.
func (d *Daemon) setupPairing(cfg, own *config.Config, rec *pairing.Record) error {
	if !teachIn(cfg) {
		return nil
	}
	id, err := d.state.identity()
	if err != nil {
		return err
	}
	role := pairing.RoleMain
	if cfg.Mode == "spare" {
		role = pairing.RoleSpare
	}
	name := cfg.NodeName
	if name == "" {
		name = fmt.Sprintf("node-%016x", d.nodeID)
	}
	if len(name) > pairing.MaxNameLen {
		name = name[:pairing.MaxNameLen]
	}
	sw := Version
	if len(sw) > pairing.MaxSoftwareLen {
		sw = sw[:pairing.MaxSoftwareLen]
	}
	m, err := pairing.New(pairing.Config{
		Role: role, NodeID: d.nodeID, NodeName: name, Software: sw,
		Key: id.Public().(ed25519.PublicKey), Settings: settingsOf(own), Window: cfg.PairWindow.Duration,
	}, rec)
	if err != nil {
		return fmt.Errorf("daemon: pairing: %w", err)
	}
	d.pair = &pairState{m: m, id: id, own: settingsOf(own), macs: map[uint64]net.HardwareAddr{}, buf: make([]byte, 0, frame.PairMaxLen)}
	d.checkSettings(own)
	d.pairListen(m.State())
	return nil
}

// setupMirrorIdentity prepares the mirror's TLS identity: a taught-in
// node with a record presents its own identity key and pins the peer's
// key of the record; a provisioned node uses the identity derived from the
// pair key; an unpaired node has none (its mirror refuses every
// handshake and does not dial) until persistPair sets it, live.
func (d *Daemon) setupMirrorIdentity(rec *pairing.Record) error {
	d.mirrorID = sdcard.NewTLSIdentity()
	switch {
	case d.pair != nil && rec != nil:
		return d.mirrorID.SetKeys(d.pair.id, rec.Peer.Key)
	case d.pair == nil && len(d.cfg.Key) > 0:
		return d.mirrorID.SetPairKey(d.cfg.Key)
	}
	return nil
}

// checkSettings compares this node's config (as in the file) with the
// pair-level settings of the record: on the main, its config changed
// since the pair was taught in (the spare runs on what it adopted then);
// on the spare, its file sets a pair-level key to another value than the
// main's. The first such key is the alarm settings-mismatch.
func (d *Daemon) checkSettings(own *config.Config) {
	if d.pair == nil {
		return
	}
	d.pair.mismatch = settingsMismatch(own, d.pair.m.Record())
	d.settingsAlarm()
}

// settingsMismatch returns the first pair-level key in which own differs
// from the record's settings ("" when none, or without a record).
func settingsMismatch(own *config.Config, rec *pairing.Record) string {
	if rec == nil {
		return ""
	}
	mine := settingsOf(own)
	if rec.Role == pairing.RoleMain {
		return pairing.Compare(mine, rec.Settings)
	}
	for _, key := range pairing.SettingKeys() {
		if !own.Sets(key) {
			continue // left to the main
		}
		if pairing.Differs(mine, rec.Settings, key) {
			return key
		}
	}
	return ""
}

// teachInFilter passes every frame with the magic, pairing frames
// included, so that the pair key can change while the socket is open.
func teachInFilter() *rawether.Filter {
	return &rawether.Filter{
		Match:  []rawether.Match{{Offset: 0, Value: []byte(frame.Magic)}},
		MaxLen: max(frame.MaxLen, frame.PairMaxLen),
	}
}

// listenFilter is the failover-line socket filter for cfg.
func listenFilter(cfg *config.Config) *rawether.Filter {
	if teachIn(cfg) {
		return teachInFilter()
	}
	return frameFilter(cfg.Key)
}

// decodePair checks a pairing frame on a receive goroutine. A node takes
// them only while a window, a join or a pending approval is open (and a
// short grace after pairing); otherwise they are dropped as "other".
func (d *Daemon) decodePair(r received, b []byte) (received, bool) {
	if time.Duration(d.pairUntil.Load()) < d.mono() || r.path != engine.PathLAN2 {
		d.frames.Record(errNotForEngine)
		return r, r.raw != nil
	}
	payload, err := frame.DecodePair(b)
	var msg pairing.Message
	if err == nil {
		err = msg.UnmarshalBinary(payload)
	}
	if err != nil {
		d.frames.Record(frame.ErrMalformed)
		return r, r.raw != nil
	}
	r.pair = &msg
	return r, true
}

// pairListen sets until when the receive goroutines pass pairing frames.
func (d *Daemon) pairListen(s pairing.State) {
	switch s {
	case pairing.StateWindow, pairing.StateJoining, pairing.StatePending:
		d.pairUntil.Store(int64(1<<63 - 1))
	case pairing.StatePaired:
		d.pairUntil.Store(int64(d.mono() + pairGrace))
	default:
		d.pairUntil.Store(0)
	}
}

// pairReceived feeds a pairing message to the machine (in the loop).
func (d *Daemon) pairReceived(r received) {
	if d.pair == nil {
		return
	}
	if r.pair.From != 0 && len(r.src) == 6 {
		d.pair.macs[r.pair.From] = r.src
	}
	acts, _ := d.pair.m.Step(d.mono(), pairing.Received{Msg: *r.pair})
	d.pairApply(acts)
}

// pairTick advances the machine's timers; it runs on the loop's tick.
func (d *Daemon) pairTick() {
	if d.pair != nil {
		d.pairApply(d.pair.m.Tick(d.mono()))
	}
}

// pairStep feeds a command to the machine.
func (d *Daemon) pairStep(ev pairing.Event) error {
	if d.pair == nil {
		return errors.New("this node has a provisioned pair-key; the teach-in is off (remove pair-key to use it)")
	}
	acts, err := d.pair.m.Step(d.mono(), ev)
	d.pairApply(acts)
	return err
}

// pairApply carries out the machine's actions in order.
func (d *Daemon) pairApply(acts []pairing.Action) {
	for _, a := range acts {
		switch a := a.(type) {
		case pairing.Send:
			d.pairSend(a)
		case pairing.Persist:
			if err := d.persistPair(a.Record); err != nil {
				d.log.Error("cannot persist the pair record", "err", err)
				more, _ := d.pair.m.Step(d.mono(), pairing.PersistFailed{Err: err})
				d.pairApply(more)
				return // the rest of this batch (the accept) must not go out
			}
		case pairing.Forget:
			if err := d.state.forget(); err != nil {
				d.log.Error("cannot remove the pair record", "err", err)
			}
			d.pairForgotten()
		case pairing.StateChanged:
			d.pairListen(a.State)
			if d.panel != nil {
				d.panel.decoder.SetPairing(a.State == pairing.StateWindow || a.State == pairing.StateJoining || a.State == pairing.StatePending)
			}
			d.log.Info("pairing state changed", "state", a.State, "prev", a.Prev, "reason", a.Reason)
			was, is := a.Prev == pairing.StatePaired, a.State == pairing.StatePaired
			if was != is {
				d.publishAlarms(alarmUnpaired, !is, a.Reason)
			}
		case pairing.Log:
			d.logbook(a.Kind, a.Message)
		default:
			panic(fmt.Sprintf("daemon: unknown pairing action %T", a))
		}
	}
}

// pairSend puts a message in a pairing frame on the failover line.
func (d *Daemon) pairSend(a pairing.Send) {
	if d.deps.LAN2 == nil {
		return
	}
	msg, err := a.Msg.MarshalBinary()
	if err == nil {
		d.pair.buf, err = frame.AppendPair(d.pair.buf[:0], msg)
	}
	if err != nil {
		d.log.Error("cannot encode a pairing message", "kind", a.Msg.Kind, "err", err)
		return
	}
	dst := rawether.Broadcast
	if mac, ok := d.pair.macs[a.To]; ok && a.To != 0 {
		dst = mac
	}
	if err := d.deps.LAN2.Send(dst, d.pair.buf); err != nil {
		d.log.Warn("cannot send a pairing message", "kind", a.Msg.Kind, "err", err)
	}
}

// persistPair writes the record; once it is on disk, the pair key is used
// at once and the node may become primary.
func (d *Daemon) persistPair(rec pairing.Record) error {
	b, err := rec.MarshalBinary()
	if err != nil {
		return err
	}
	if err := d.state.write(recordFile, b); err != nil {
		return err
	}
	d.key.Store(frame.NewKey(rec.PairKey[:]))
	// The mirror's listener and dialer use the new identity from their
	// next handshake on: no restart on either side.
	if err := d.mirrorID.SetKeys(d.pair.id, rec.Peer.Key); err != nil {
		d.log.Error("cannot pin the peer's key for the mirror", "err", err)
	}
	c := *d.cfg
	c.Key = append([]byte(nil), rec.PairKey[:]...)
	d.cfg = &c
	d.pair.mismatch = ""
	d.resetPeerSettings() // a new peer: its settings come at peer-up
	// The spare's adopted settings, and the virtual MAC (derived from the
	// pair id), take effect with the sockets and the address manager a
	// start opens.
	why := ""
	switch {
	case rec.Role == pairing.RoleSpare && pairing.Compare(d.pair.own, rec.Settings) != "":
		why = "the main's settings"
	case d.cfg.LAN1.VirtualMAC:
		why = "the pair's virtual MAC"
	case d.arb != nil:
		why = "the pair's arbiter key" // the lease client's key is fixed when it opens
	}
	if why != "" {
		if d.eng.Role() != engine.RolePrimary {
			d.pair.restart = true
			d.logbook("pairing", "restarting to adopt "+why)
		} else {
			d.logbook("pairing", why+" apply at the next start (this node is primary)")
		}
	}
	d.setUnpaired(false)
	return nil
}

// pairForgotten: the record is gone. A primary keeps its key and its role
// (a survivor, unpaired to teach in a replacement); any other node stops
// using the key and may no longer become primary.
func (d *Daemon) pairForgotten() {
	if d.eng.Role() == engine.RolePrimary {
		return
	}
	d.key.Store(nil)
	d.mirrorID.Clear()
	d.resetPeerSettings()
	d.setUnpaired(true)
}

// setUnpaired tells the engine whether the node may become primary.
func (d *Daemon) setUnpaired(unpaired bool) {
	ecfg := d.cfg.Engine
	ecfg.NodeID, ecfg.Software, ecfg.Unpaired = d.nodeID, Version, unpaired
	if err := d.eng.Reconfigure(ecfg); err != nil {
		d.log.Error("cannot reconfigure the engine after pairing", "err", err)
		return
	}
	d.cfg.Engine.Unpaired = unpaired
}

// PairingReport is the `pairing` part of `status --json`.
type PairingReport struct {
	State string       `json:"state"` // unpaired, pending or paired
	Peer  *PairingPeer `json:"peer,omitempty"`
	// Step is the machine's own state: window, joining, ... (detail);
	// provisioned with a pair-key in the config.
	Step      string `json:"step"`
	Code      string `json:"code,omitempty"`
	ExpiresIn string `json:"expires-in,omitempty"`
	Check     string `json:"check,omitempty"`
	Accepted  *bool  `json:"accepted,omitempty"`
	PeerOK    *bool  `json:"peer-accepted,omitempty"`
	Reason    string `json:"reason,omitempty"`
	// Mismatch names the pair-level keys of the alarm settings-mismatch,
	// comma-separated.
	Mismatch string `json:"settings-mismatch,omitempty"`
}

// PairingPeer is the peer as the exchange authenticated it.
type PairingPeer struct {
	Name     string `json:"name"`
	NodeID   string `json:"node-id"`
	Software string `json:"software"`
}

func (d *Daemon) pairingReport() *PairingReport {
	if d.pair == nil {
		if d.eng.Status().Mode == engine.ModeIndependent {
			return nil
		}
		return &PairingReport{State: "paired", Step: "provisioned", Mismatch: d.settings.alarm} // pair-key in the config
	}
	st := d.pair.m.Status()
	r := &PairingReport{State: "unpaired", Step: st.State.String(), Reason: st.Reason, Mismatch: d.settings.alarm}
	if r.Reason == "" && st.State == pairing.StateUnpaired {
		r.Reason = d.pair.damaged
	}
	switch st.State {
	case pairing.StatePending:
		r.State, r.Check = "pending", st.Check
		r.Accepted, r.PeerOK = &st.LocalAccepted, &st.PeerAccepted
	case pairing.StatePaired:
		r.State = "paired"
	case pairing.StateWindow:
		r.Code = st.Code.String()
	}
	if st.Expires > 0 && st.State != pairing.StatePaired {
		r.ExpiresIn = (st.Expires - d.mono()).Round(time.Second).String()
	}
	if st.Peer != nil {
		r.Peer = &PairingPeer{Name: st.Peer.Name, NodeID: fmt.Sprintf("%016x", st.Peer.NodeID), Software: st.Peer.Software}
	}
	return r
}

// pairingAlarms are the daemon's pairing alarms, for status.
func (d *Daemon) pairingAlarms() []string {
	var out []string
	if d.pair != nil && d.pair.m.State() != pairing.StatePaired {
		out = append(out, alarmUnpaired)
	}
	if d.settings.alarm != "" {
		out = append(out, alarmSettings)
	}
	return out
}

// pairingOpen reports whether a window, join or approval is open (LEDs,
// button).
func (d *Daemon) pairingOpen() bool {
	if d.pair == nil {
		return false
	}
	s := d.pair.m.State()
	return s == pairing.StateWindow || s == pairing.StateJoining || s == pairing.StatePending
}

func (d *Daemon) cmdPair(req control.Request) control.Response {
	var ev pairing.Event
	switch req.Pair {
	case "begin":
		ev = pairing.Begin{}
	case "join":
		ev = pairing.Join{Code: pairing.Code(req.Code)}
	case "accept":
		ev = pairing.Accept{}
	case "reject":
		ev = pairing.Reject{}
	case "cancel":
		ev = pairing.Cancel{}
	default:
		return control.Response{Error: fmt.Sprintf("pair: unknown step %q", req.Pair)}
	}
	if err := d.pairStep(ev); err != nil {
		return control.Response{Error: "pair " + req.Pair + ": " + err.Error()}
	}
	r := d.pairingReport()
	var text string
	switch req.Pair {
	case "begin":
		text = fmt.Sprintf("pairing window open for %s\ncode %s\nrun on the spare: pairguard pair join %s\n", r.ExpiresIn, r.Code, r.Code)
	case "join":
		text = fmt.Sprintf("looking for the main's window (for %s); pairguard status shows the peer and the check number\n", r.ExpiresIn)
	case "accept":
		text = "accepted on this unit; " + r.State + "\n"
	default:
		text = r.Step + "\n"
	}
	return control.Response{OK: true, Text: text, Data: jsonData(r)}
}

func (d *Daemon) cmdUnpair(control.Request) control.Response {
	if err := d.pairStep(pairing.Unpair{}); err != nil {
		return control.Response{Error: "unpair: " + err.Error()}
	}
	return control.Response{OK: true, Text: "unpaired; the node keeps its role and data; teach in the new unit with pair begin/join\n"}
}

// pairText is the pairing line of `status`.
func (r *PairingReport) text() string {
	s := r.State
	switch {
	case r.Step == "window":
		s += fmt.Sprintf(", window open, code %s, %s left", r.Code, r.ExpiresIn)
	case r.Step == "joining":
		s += fmt.Sprintf(", joining, %s left", r.ExpiresIn)
	}
	if r.Peer != nil {
		s += fmt.Sprintf(", peer %q (%s, %s)", r.Peer.Name, r.Peer.NodeID, r.Peer.Software)
	}
	if r.Check != "" {
		s += ", check number " + r.Check
		if r.Accepted != nil && !*r.Accepted {
			s += ": compare with the peer, then pair accept"
		}
	}
	if r.Mismatch != "" {
		s += ", settings differ from the pair's: " + r.Mismatch
	}
	return s
}

// panelPairing is what the LEDs show of the teach-in.
func (d *Daemon) panelPairing() panel.Pairing {
	switch {
	case d.pair == nil:
		return panel.PairingNone
	case d.pairingOpen():
		return panel.PairingOpen
	case d.pair.m.State() != pairing.StatePaired:
		return panel.PairingUnpaired
	}
	return panel.PairingNone
}
