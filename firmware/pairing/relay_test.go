package pairing

import (
	"bytes"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"testing"
)

// TestRelayWithTheCode: an attacker who read the code over the engineer's
// shoulder and sits between the units runs two exchanges, one with the main
// (posing as the spare, with the spare's node id and name) and one with the
// spare (posing as the main). Both units reach pending and show what looks
// like the right peer, but two exchanges have two ISKs, so the check
// numbers on the two displays differ: comparing them is what stops this.
// The attacker cannot grind its share until the numbers match, because the
// number also depends on the main's nonce R, committed in the share and
// revealed only after the attacker's reply.
func TestRelayWithTheCode(t *testing.T) {
	seeded := func(seed byte) io.Reader { return rand.NewChaCha8([32]byte{seed}) }
	mainCfg := testConfig(t, RoleMain, mainID, "main-a")
	mainCfg.Rand = seeded(1)
	spareCfg := testConfig(t, RoleSpare, spareID, "spare-b")
	spareCfg.Rand = seeded(2)

	// The attacker's half facing the main: a spare with the spare's identity.
	fakeSpare := spareCfg
	fakeSpare.Rand = seeded(3)
	toMain := newSim(t, mainCfg, fakeSpare)
	code := toMain.begin()

	// The attacker's half facing the spare: a main with the main's identity
	// and, thanks to the shoulder, the same code.
	var v [4]byte
	binary.BigEndian.PutUint32(v[:], uint32(mustAtoi(t, string(code))))
	fakeMain := mainCfg
	fakeMain.Rand = io.MultiReader(bytes.NewReader(v[:]), seeded(4))
	toSpare := newSim(t, fakeMain, spareCfg)
	if c := toSpare.begin(); c != code {
		t.Fatalf("the attacker's code %s is not %s", c, code)
	}

	toMain.step(spareID, Join{Code: code})
	toSpare.step(spareID, Join{Code: code})
	toMain.wantState(mainID, StatePending)
	toSpare.wantState(spareID, StatePending)

	onMain := toMain.node(mainID).m.Status()
	onSpare := toSpare.node(spareID).m.Status()
	if onMain.Peer.Name != "spare-b" || onSpare.Peer.Name != "main-a" || onSpare.Peer.NodeID != mainID {
		t.Fatalf("the impersonation itself failed: %+v / %+v", onMain.Peer, onSpare.Peer)
	}
	if onMain.Check == onSpare.Check {
		t.Fatalf("both units show check number %s across two exchanges", onMain.Check)
	}
	// The honest case, for contrast: one exchange, one number.
	if h := pairedSim(t); h.node(mainID).m.Status().Check != h.node(spareID).m.Status().Check {
		t.Fatal("an honest exchange shows two check numbers")
	}
}

func mustAtoi(t *testing.T, s string) int {
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			t.Fatalf("not a number: %q", s)
		}
		n = 10*n + int(c-'0')
	}
	return n
}
