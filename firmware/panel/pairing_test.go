package panel

import (
	"testing"

	"github.com/pairguard/pairguard/firmware/engine"
)

func TestPairingPatterns(t *testing.T) {
	base := State{Role: engine.RoleSecondary, Peer: engine.PeerDown, Mirror: engine.MirrorOff}
	for _, tc := range []struct {
		name     string
		change   func(*State)
		role     Light
		failover Pattern
	}{
		{"provisioned", func(*State) {}, Light{ColourRed, SlowBlink}, Off},
		{"unpaired", func(s *State) { s.Pairing = PairingUnpaired }, Light{ColourRed, SlowBlink}, SlowBlink},
		{"window", func(s *State) { s.Pairing = PairingOpen }, Light{ColourGreen, FastBlink}, FastBlink},
		{"window, fault wins", func(s *State) { s.Pairing = PairingOpen; s.Fault = true }, Light{ColourRed, Solid}, FastBlink},
		{"held sync wins", func(s *State) { s.Pairing = PairingUnpaired; s.Held = ActionSync }, Light{ColourRed, SlowBlink}, SlowBlink},
		{"failover lit wins", func(s *State) { s.Pairing = PairingUnpaired; s.FailoverLit = true }, Light{ColourRed, SlowBlink}, Solid},
	} {
		s := base
		tc.change(&s)
		d := Patterns(s)
		if d.Role != tc.role || d.Failover != tc.failover {
			t.Errorf("%s: role %v, failover %v; want %v, %v", tc.name, d.Role, d.Failover, tc.role, tc.failover)
		}
	}
}
