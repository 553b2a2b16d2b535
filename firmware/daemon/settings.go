package daemon

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/pairguard/pairguard/drivers/rawether"
	"github.com/pairguard/pairguard/firmware/engine"
	"github.com/pairguard/pairguard/firmware/frame"
	"github.com/pairguard/pairguard/firmware/pairing"
)

// The running pair compares its pair-level settings (service address,
// heartbeat timers, recovery, on-line-loss, datastore mode, interval and
// replication: pairing.SettingKeys). Each node sends the settings it runs
// on (a taught-in spare: the main's, adopted at the teach-in) to its peer
// in settings frames on the failover line: authenticated under the pair
// key like heartbeats, in parts of 44 bytes (frame.SettingsPart), at
// peer-up, whenever its own change (a reload) and every settingsEvery.
// The receiver puts the parts together and compares them with its own:
// every key that differs is named by the alarm settings-mismatch, with
// both values in the logbook; the alarm clears when they agree again (the
// edited config is put back, or the pair is taught in again). Provisioned
// pairs (pair-key in both configs) compare the same keys.
//
// The alarm also names the keys in which this node's config file differs
// from its pair record (checkSettings, pairing.go): a main whose config
// changed since the teach-in, a spare whose file sets a pair-level key to
// another value than the main's.

// settingsEvery is how often a node repeats its settings while the peer
// is up (a peer that restarted within the failover time, unnoticed, has
// them again after at most this long).
const settingsEvery = 5 * time.Second

// settingsSync is the daemon's side of the comparison; it lives on the
// loop.
type settingsSync struct {
	sent    []byte        // this node's encoded settings, as last compared and sent
	sentAt  time.Duration // when they were last sent (mono), 0: never
	peerUp  bool          // the peer was up at the last tick
	asm     frame.SettingsAssembler
	peerRaw []byte            // the peer's settings as last received
	peer    *pairing.Settings // decoded; nil: none yet or unreadable
	peerErr string            // why peerRaw could not be read
	diff    []string          // keys in which the peer's settings differ from this node's
	reason  string            // the values behind diff, for the logbook
	alarm   string            // the keys the alarm names now, comma-separated ("": not raised)
	buf     []byte
}

// settingsTick runs every second on the loop: it compares again when this
// node's settings changed and sends them when the peer came up, when they
// changed, or every settingsEvery.
func (d *Daemon) settingsTick() {
	s := &d.settings
	key := d.key.Load()
	if key == nil || d.deps.LAN2 == nil {
		s.peerUp = false
		return
	}
	own, err := settingsOf(d.cfg).MarshalBinary()
	if err != nil {
		d.log.Error("cannot encode the pair-level settings", "err", err)
		return
	}
	changed := !bytes.Equal(own, s.sent)
	if changed {
		s.sent = own
		d.compareSettings()
	}
	up := d.eng.Status().Peer.State == engine.PeerUp
	if up && (!s.peerUp || changed || d.mono()-s.sentAt >= settingsEvery) {
		d.sendSettings(key, own)
	}
	s.peerUp = up
}

// sendSettings sends own in settings frames on the failover line.
func (d *Daemon) sendSettings(key *frame.Key, own []byte) {
	s := &d.settings
	parts, err := frame.SettingsParts(own, frame.SettingsPart{PairID: key.PairID(), NodeID: d.nodeID, BootID: d.bootID})
	if err != nil {
		d.log.Error("cannot split the pair-level settings", "err", err)
		return
	}
	s.sentAt = d.mono()
	for i := range parts {
		d.seq++
		parts[i].Seq = d.seq
		if s.buf, err = parts[i].AppendBinary(s.buf[:0], key); err != nil {
			d.log.Error("cannot encode a settings frame", "err", err)
			return
		}
		if err := d.deps.LAN2.Send(rawether.Broadcast, s.buf); err != nil {
			d.log.Debug("cannot send a settings frame", "err", err)
			return
		}
		d.feedCaptures(engine.PathLAN2, d.deps.LAN2.Addr(), s.buf, true)
	}
}

// decodeSettings checks a settings frame on a receive goroutine: the pair
// key, the replay window (the heartbeats' counter); the node's own frames
// sent back are counted as reflected.
func (d *Daemon) decodeSettings(r received, b []byte) (received, bool) {
	key := d.key.Load()
	if key == nil {
		d.frames.Record(frame.ErrPair)
		return r, r.raw != nil
	}
	var p frame.SettingsPart
	err := frame.DecodeSettings(b, key, &p)
	if err == nil {
		err = d.replay.Check(p.NodeID, p.BootID, p.Seq)
	}
	d.frames.Record(err)
	if err != nil {
		return r, r.raw != nil
	}
	if p.NodeID == d.nodeID {
		d.frames.Reflected.Add(1)
		return r, r.raw != nil
	}
	r.settings = &p
	return r, true
}

// settingsReceived takes a part on the loop; once the peer's settings are
// complete and new, it compares.
func (d *Daemon) settingsReceived(r received) {
	s := &d.settings
	raw := s.asm.Add(r.settings)
	if raw == nil || bytes.Equal(raw, s.peerRaw) {
		return
	}
	s.peerRaw = raw
	var peer pairing.Settings
	if err := peer.UnmarshalBinary(raw); err != nil {
		s.peer, s.peerErr = nil, err.Error()
	} else {
		s.peer, s.peerErr = &peer, ""
	}
	d.compareSettings()
}

// compareSettings compares the peer's last settings with this node's.
func (d *Daemon) compareSettings() {
	s := &d.settings
	s.diff, s.reason = nil, ""
	switch {
	case s.peer != nil:
		own := settingsOf(d.cfg)
		s.diff = pairing.Diff(*s.peer, own)
		var why []string
		for _, k := range s.diff {
			why = append(why, fmt.Sprintf("%s is %q on the peer, %q here", k, s.peer.Value(k), own.Value(k)))
		}
		s.reason = strings.Join(why, "; ")
	case s.peerErr != "":
		s.diff = []string{"settings"}
		s.reason = "the peer's settings cannot be read: " + s.peerErr
	}
	d.settingsAlarm()
}

// resetPeerSettings forgets the peer's settings (a new pair key: another
// peer, or none).
func (d *Daemon) resetPeerSettings() {
	s := &d.settings
	s.asm = frame.SettingsAssembler{}
	s.peerRaw, s.peer, s.peerErr, s.sent, s.sentAt, s.peerUp = nil, nil, "", nil, 0, false
	d.compareSettings()
}

// settingsAlarm raises, changes or clears the alarm settings-mismatch
// from the keys this node's file differs in from the pair record and
// those the peer's settings differ in, in the order of SettingKeys.
func (d *Daemon) settingsAlarm() {
	s := &d.settings
	var keys, why []string
	local := ""
	if d.pair != nil {
		local = d.pair.mismatch
	}
	for _, k := range append(pairing.SettingKeys(), "settings") {
		if k == local || slices.Contains(s.diff, k) {
			keys = append(keys, k)
		}
	}
	if local != "" {
		why = append(why, local+" in this unit's config differs from the pair's setting")
	}
	if s.reason != "" {
		why = append(why, s.reason)
	}
	now := strings.Join(keys, ",")
	if now == s.alarm {
		return
	}
	s.alarm = now
	if d.eng == nil { // New is still preparing the daemon
		return
	}
	reason := strings.Join(why, "; ")
	if now != "" {
		d.logbook("alarm", "settings-mismatch: "+reason)
	} else {
		d.logbook("alarm", "settings-mismatch cleared: the pair-level settings agree")
	}
	d.publishAlarms(alarmSettings, now != "", reason)
}
