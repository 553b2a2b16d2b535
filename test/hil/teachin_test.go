package hil

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pairguard/pairguard/board"
	"github.com/pairguard/pairguard/firmware/panel"
)

// teachInConfig is a board's config without pair-key: the main's as usual,
// the spare's only its mode, name, board and LAN 2 address (the board
// names the interfaces; the service address and the timers come from the
// main).
func (s spec) teachInConfig(b *board.Board) string {
	if s.mode == "spare" {
		return fmt.Sprintf("# written by the hardware-in-the-loop harness (teach-in)\nmode = %q\nnode-name = %q\nboard = %q\n\n[lan2]\naddress = %q\n",
			s.mode, s.name, boardName, s.lan2Addr())
	}
	return fmt.Sprintf(`# written by the hardware-in-the-loop harness (teach-in)
mode = %q
node-name = %q
board = %q
recovery = "manual"

[lan1]
service-address = "%s/24"

[lan2]
address = %q

[heartbeat]
interval = %q
missed = %d
failover-time = %q
connection-wait-time = %q
`, s.mode, s.name, boardName, serviceAddr, s.lan2Addr(), heartbeatInterval, heartbeatMissed, failoverTime, connectionWaitTime)
}

// pairingStatus is the `pairing` part of `status --json`.
type pairingStatus struct {
	Role    string   `json:"role"`
	Alarms  []string `json:"alarms"`
	Pairing struct {
		State string `json:"state"`
		Step  string `json:"step"`
		Check string `json:"check"`
	} `json:"pairing"`
	Peer struct {
		State string `json:"state"`
	} `json:"peer"`
}

func (n *node) waitPairing(what string, timeout time.Duration, cond func(pairingStatus) bool) pairingStatus {
	n.t.Helper()
	deadline := time.Now().Add(timeout)
	var last pairingStatus
	for {
		out, code, err := n.tryRun("pairguard status --json", 20*time.Second)
		if i := strings.Index(out, "{"); err == nil && code == 0 && i >= 0 {
			var s pairingStatus
			if json.Unmarshal([]byte(out[i:]), &s) == nil {
				last = s
				if cond(s) {
					return s
				}
			}
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("hil: %s: not %s after %v (last %+v)", n.spec.name, what, timeout, last)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// TestTeachInByConsoleAndButton: two boards without a pair key boot
// unpaired; `pair begin` on the main's console prints the code, `pair join`
// on the spare's console finds the main, `pair accept` on the main's
// console and a short press of the spare's button (system_powerdown)
// approve; the pair forms, the spare with the main's service address.
func TestTeachInByConsoleAndButton(t *testing.T) {
	p := newPair(t)
	ms, ss := mainSpec, spareSpec
	ms.teachIn, ss.teachIn = true, true
	nodes := p.boot(ms, ss)
	m, s := nodes[0], nodes[1]
	for _, n := range nodes {
		st := n.waitPairing("unpaired", 60*time.Second, func(st pairingStatus) bool { return st.Pairing.State == "unpaired" })
		if st.Role == "primary" {
			t.Fatalf("%s unpaired and primary", n.spec.name)
		}
	}
	// The LEDs: unpaired, the failover LED blinks slowly.
	s.waitFailoverLED(panel.SlowBlink, 10*time.Second)
	out, code := m.run("pairguard pair begin", 30*time.Second)
	found := regexp.MustCompile(`code (\d{4}-\d{4})`).FindStringSubmatch(out)
	if code != 0 || found == nil {
		t.Fatalf("pair begin: exit %d: %q", code, out)
	}
	if out, code := s.run("pairguard pair join "+found[1], 30*time.Second); code != 0 {
		t.Fatalf("pair join: exit %d: %q", code, out)
	}
	mp := m.waitPairing("pending", 60*time.Second, func(st pairingStatus) bool { return st.Pairing.State == "pending" })
	sp := s.waitPairing("pending", 30*time.Second, func(st pairingStatus) bool { return st.Pairing.State == "pending" })
	if mp.Pairing.Check == "" || mp.Pairing.Check != sp.Pairing.Check {
		t.Fatalf("check numbers: main %q, spare %q", mp.Pairing.Check, sp.Pairing.Check)
	}
	// Pending: the role LED blinks green fast (a press approves).
	s.waitRoleLight(panel.Light{Colour: panel.ColourGreen, Pattern: panel.FastBlink}, 10*time.Second)
	if out, code := m.run("pairguard pair accept", 30*time.Second); code != 0 {
		t.Fatalf("pair accept: exit %d: %q", code, out)
	}
	s.pressButton()
	m.waitPairing("paired and primary", 60*time.Second, func(st pairingStatus) bool {
		return st.Pairing.State == "paired" && st.Role == "primary"
	})
	s.waitPairing("paired, secondary, peer up", 60*time.Second, func(st pairingStatus) bool {
		return st.Pairing.State == "paired" && st.Role == "secondary" && st.Peer.State == "up"
	})
	s.waitFailoverLED(panel.Off, 10*time.Second)
	if !clientPing(t, serviceAddr) {
		t.Errorf("client cannot reach the service address %s", serviceAddr)
	}
}
