package pairing

import (
	"bytes"
	"crypto/rand"
	"crypto/sha512"
	"encoding/binary"
	"fmt"
	"io"
	"testing"

	"github.com/gtank/ristretto255"

	"github.com/pairguard/pairguard/firmware/pairing/cpace"
)

// TestEavesdropper records an honest exchange from the line and tries to
// confirm its tags offline, as someone searching the 10^8 codes would.
//
// A test cannot prove a hardness assumption; what it can show honestly is
// where the oracle is missing. The tags are MACs keyed by the ISK, and the
// ISK needs K = y·Y_peer, a secret scalar times a share. With the spare's
// own scalar (the participant's view, the positive control) the recorded
// tags confirm, without needing the code at all. From the public
// transcript and a candidate code, every value an eavesdropper can form —
// the candidate generator, the shares, their sum and difference — fails to
// confirm, and fails the same way for the right code as for the wrong
// ones: knowing the code does not even let one recognise it. The search
// runs over the true code and 2000 others, not all 10^8.
func TestEavesdropper(t *testing.T) {
	var spareRand bytes.Buffer
	spare := testConfig(t, RoleSpare, spareID, "spare-b")
	spare.Rand = io.TeeReader(rand.Reader, &spareRand)
	n := newSim(t, testConfig(t, RoleMain, mainID, "main-a"), spare)
	code := n.begin()
	n.step(spareID, Join{Code: code})
	n.wantState(spareID, StatePending)

	share, reply, finish := n.tap[1], n.tap[2], n.tap[3]
	if share.Kind != KindShare || reply.Kind != KindReply || finish.Kind != KindFinish {
		t.Fatalf("transcript %v", kinds(n.tap))
	}
	msgA, msgB, ta, tb := share.Share, reply.Share, finish.Tag, reply.Tag
	sid := append(share.NonceS[:], share.NonceM[:]...)
	ci := channel(mainID, spareID)
	confirms := func(isk []byte) bool {
		return cpace.CheckTag(isk, msgA, ta) || cpace.CheckTag(isk, msgB, tb)
	}
	iskFrom := func(k *ristretto255.Element) []byte {
		h := sha512.New()
		h.Write(cpace.PrefixFreeCat([]byte(cpace.DSI+"_ISK"), sid, k.Encode(nil)))
		h.Write(msgA)
		h.Write(msgB)
		return h.Sum(nil)
	}
	decode := func(msg []byte) *ristretto255.Element {
		y, _, err := cpace.ParseMessage(msg)
		if err != nil {
			t.Fatal(err)
		}
		e := ristretto255.NewElement()
		if err := e.Decode(y); err != nil {
			t.Fatal(err)
		}
		return e
	}
	ya, yb := decode(msgA), decode(msgB)

	// The participant's view: the spare's scalar (the 64 random bytes it
	// drew after its 16-byte nonce) gives K and the ISK, and both tags confirm.
	seed := spareRand.Bytes()[NonceLen : NonceLen+64]
	s := ristretto255.NewScalar().FromUniformBytes(seed)
	if !bytes.Equal(ristretto255.NewElement().ScalarMult(s, cpace.Generator(code.prs(), ci, sid)).Encode(nil), yb.Encode(nil)) {
		t.Fatal("the recovered scalar is not the spare's: the positive control is broken")
	}
	if isk := iskFrom(ristretto255.NewElement().ScalarMult(s, ya)); !cpace.CheckTag(isk, msgA, ta) || !cpace.CheckTag(isk, msgB, tb) {
		t.Fatal("the participant's ISK does not confirm the recorded tags")
	}

	// The eavesdropper's view.
	candidates := []Code{code}
	var b [4]byte
	for len(candidates) < 2001 {
		rand.Read(b[:])
		if c := Code(fmt.Sprintf("%08d", binary.BigEndian.Uint32(b[:])%codeSpace)); c != code {
			candidates = append(candidates, c)
		}
	}
	for _, c := range candidates {
		g := cpace.Generator(c.prs(), ci, sid)
		for name, k := range map[string]*ristretto255.Element{
			"g":       g,
			"Ya":      ya,
			"Yb":      yb,
			"Ya+Yb":   ristretto255.NewElement().Add(ya, yb),
			"Ya-Yb":   ristretto255.NewElement().Subtract(ya, yb),
			"g+Ya+Yb": ristretto255.NewElement().Add(g, ristretto255.NewElement().Add(ya, yb)),
		} {
			if confirms(iskFrom(k)) {
				t.Fatalf("code %s with K = %s confirms the transcript offline", c, name)
			}
		}
		// A fresh exchange for the candidate, as if the eavesdropper were
		// the spare: its own share differs from the recorded one, so its
		// ISK covers another transcript and confirms nothing.
		p, err := cpace.New(rand.Reader, false, c.prs(), ci, sid, nil)
		if err != nil {
			t.Fatal(err)
		}
		if isk, err := p.Finish(msgA); err == nil && confirms(isk) {
			t.Fatalf("code %s confirms with a fresh scalar", c)
		}
	}
}
