package daemon

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/pairguard/pairguard/drivers/rawether"
	"github.com/pairguard/pairguard/firmware/engine"
	"github.com/pairguard/pairguard/firmware/frame"
)

// The one mapping: what the engine sends is what the peer's engine gets.
func TestFrameMappingRoundTrip(t *testing.T) {
	key := frame.NewKey([]byte("pair key of the mapping test"))
	for _, want := range []engine.PeerInfo{
		{Kind: engine.FrameHeartbeat, NodeID: 1, BootID: 2, Nonce: 3, Echo: 4, Mode: engine.ModeMain, Role: engine.RolePrimary,
			Preferred: true, Eligible: true, Epoch: 5, Data: engine.DataUpToDate, Generation: 6, History: 7,
			Mirror: engine.MirrorSyncing, Percent: 42, Software: "1.2.3"},
		{Kind: engine.FrameRelease, NodeID: 9, Mode: engine.ModeSpare, Role: engine.RoleSecondary, Handover: true,
			Data: engine.DataInconsistent, Mirror: engine.MirrorOff},
	} {
		f := frameFrom(want, key.PairID())
		f.Seq = 77
		b, err := f.AppendBinary(nil, key)
		if err != nil {
			t.Fatal(err)
		}
		var got frame.Frame
		if err := frame.Decode(b, key, &got); err != nil {
			t.Fatal(err)
		}
		want.Seq = 77
		if p := peerInfo(&got); p != want {
			t.Errorf("round trip:\n got %+v\nwant %+v", p, want)
		}
	}
}

// The socket filter passes this pair's frames of every known version and
// of newer ones, and nothing the decoder would refuse before the HMAC.
func TestFrameFilter(t *testing.T) {
	secret := []byte("pair key of the filter test")
	key := frame.NewKey(secret)
	flt := frameFilter(secret)
	good, _ := (&frame.Frame{Type: frame.TypeHeartbeat, PairID: key.PairID()}).AppendBinary(nil, key)
	newer, _ := (&frame.Frame{Version: 9, Type: frame.TypeHeartbeat, PairID: key.PairID()}).AppendBinary(nil, key)
	v1 := append([]byte(nil), good[:100]...)
	v1[frame.VersionOffset], v1[5] = 1, 100
	foreign, _ := (&frame.Frame{Type: frame.TypeHeartbeat, PairID: key.PairID() + 1}).AppendBinary(nil, key)
	long := append(append([]byte(nil), good...), make([]byte, 200)...)
	for name, c := range map[string]struct {
		b    []byte
		pass bool
	}{
		"v2": {good, true}, "v1": {v1, true}, "newer": {newer, true},
		"v2 cut": {good[:100], false}, "v2 long": {append(append([]byte(nil), good...), 0), false},
		"foreign": {foreign, false}, "beyond MaxLen": {long, false}, "magic": {append([]byte("XX"), good[2:]...), false},
	} {
		if got := flt.Accepts(c.b); got != c.pass {
			t.Errorf("%s: filter passes %v, want %v", name, got, c.pass)
		}
		var f frame.Frame
		if err := frame.Decode(c.b, key, &f); c.pass && errors.Is(err, frame.ErrMalformed) {
			t.Errorf("%s: the filter passes what the decoder refuses unauthenticated: %v", name, err)
		}
	}
}

func TestCountDrops(t *testing.T) {
	d := &Daemon{}
	acts := d.countDrops([]engine.Action{engine.FrameDropped{Reason: engine.DropStale}, engine.StartProbe{},
		engine.FrameDropped{Reason: engine.DropReflected}, engine.FrameDropped{Reason: engine.DropStale}})
	if len(acts) != 1 || d.frames.Stale.Load() != 2 || d.frames.Reflected.Load() != 1 {
		t.Fatalf("actions %v, stale %d, reflected %d", acts, d.frames.Stale.Load(), d.frames.Reflected.Load())
	}
}

// goneConn is a Conn whose interface is missing until back is set.
type goneConn struct {
	rawether.Conn
	back, reopened bool
}

func (c *goneConn) Refresh() (bool, error) {
	if !c.back {
		return false, fmt.Errorf("refresh: %w", rawether.ErrNoInterface)
	}
	r := !c.reopened
	c.reopened = true
	return r, nil
}

func (c *goneConn) Addr() net.HardwareAddr { return net.HardwareAddr{2, 0, 0, 0, 0, 1} }

// A failover-line interface that stays gone for persist is the fault
// lan2-missing, reported once; it clears when the interface is back. A
// LAN 1 interface is only a warning.
func TestLinkWatch(t *testing.T) {
	d := &Daemon{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	c := &goneConn{}
	l := linkWatch{d: d, c: c, path: engine.PathLAN2, persist: 2 * time.Second}
	t0 := time.Unix(1000, 0)
	for _, s := range []struct {
		at   time.Duration
		back bool
		want *linkReport
	}{
		{0, false, nil},
		{time.Second, false, nil},
		{2 * time.Second, false, &linkReport{fault: true}},
		{3 * time.Second, false, nil},
		{4 * time.Second, true, &linkReport{fault: false}},
		{5 * time.Second, true, nil},
	} {
		c.back = s.back
		got := l.check(t0.Add(s.at))
		if (got == nil) != (s.want == nil) || (got != nil && *got != *s.want) {
			t.Fatalf("at %v: report %+v, want %+v", s.at, got, s.want)
		}
	}
	lan1 := linkWatch{d: d, c: &goneConn{}, path: engine.PathLAN1, persist: time.Second}
	for i := range 5 {
		if r := lan1.check(t0.Add(time.Duration(i) * time.Second)); r != nil {
			t.Fatalf("LAN 1 reported %+v", r)
		}
	}
}
