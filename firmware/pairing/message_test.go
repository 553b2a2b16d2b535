package pairing

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/pairguard/pairguard/firmware/pairing/cpace"
)

func sampleMessages() []Message {
	share := cpace.PrefixFreeCat(bytes.Repeat([]byte{7}, cpace.ShareLen), []byte("ad"))
	h := Message{From: mainID, To: spareID, NonceS: [16]byte{1, 2}, NonceM: [16]byte{3, 4}}
	with := func(k Kind, f func(*Message)) Message {
		m := h
		m.Kind = k
		if f != nil {
			f(&m)
		}
		return m
	}
	return []Message{
		with(KindHello, func(m *Message) { m.To, m.NonceM = 0, [16]byte{} }),
		with(KindShare, func(m *Message) { m.Share = share }),
		with(KindReply, func(m *Message) { m.Share, m.Tag = share, bytes.Repeat([]byte{9}, cpace.TagLen) }),
		with(KindFinish, func(m *Message) {
			m.Tag, m.Reveal = bytes.Repeat([]byte{8}, cpace.TagLen), bytes.Repeat([]byte{4}, revealLen)
		}),
		with(KindAccept, func(m *Message) { m.Tag = bytes.Repeat([]byte{6}, authTagLen) }),
		with(KindReject, func(m *Message) { m.Reason, m.Tag = ReasonTimeout, bytes.Repeat([]byte{5}, authTagLen) }),
		with(KindAbort, func(m *Message) { m.Reason = ReasonWrongCode }),
	}
}

func TestMessageRoundTrip(t *testing.T) {
	for _, m := range sampleMessages() {
		b, err := m.MarshalBinary()
		if err != nil {
			t.Fatalf("%v: %v", m.Kind, err)
		}
		var got Message
		if err := got.UnmarshalBinary(b); err != nil {
			t.Fatalf("%v: %v", m.Kind, err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Errorf("%v: round trip\n got %+v\nwant %+v", m.Kind, got, m)
		}
		// Every truncation is refused, never read past the end.
		for i := range len(b) {
			if err := got.UnmarshalBinary(b[:i]); err == nil {
				t.Errorf("%v truncated to %d bytes accepted", m.Kind, i)
			}
		}
		// Fixed-size kinds refuse a trailing byte.
		if m.Share == nil {
			if err := got.UnmarshalBinary(append(b, 0)); !errors.Is(err, ErrMalformed) {
				t.Errorf("%v with a trailing byte: %v", m.Kind, err)
			}
		}
	}
}

func TestMessageErrors(t *testing.T) {
	good, _ := (&sampleMessages()[0]).MarshalBinary()
	for name, c := range map[string]struct {
		b    []byte
		want error
	}{
		"empty":        {nil, io.ErrUnexpectedEOF},
		"version":      {append([]byte{2}, good[1:]...), ErrVersion},
		"kind":         {append([]byte{Version, 99}, good[2:]...), ErrMalformed},
		"short hello":  {good[:HeaderLen-1], io.ErrUnexpectedEOF},
		"too long":     {append([]byte{Version, byte(KindShare)}, make([]byte, MaxLen)...), ErrMalformed},
		"abort reason": {append(append([]byte{Version, byte(KindAbort)}, good[2:]...), 0), ErrMalformed},
	} {
		var m Message
		if err := m.UnmarshalBinary(c.b); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
	for name, m := range map[string]Message{
		"hello with a tag":     {Kind: KindHello, Tag: []byte{1}},
		"finish without a tag": {Kind: KindFinish},
		"finish without R":     {Kind: KindFinish, Tag: make([]byte, cpace.TagLen)},
		"share without share":  {Kind: KindShare},
		"abort without reason": {Kind: KindAbort},
		"accept with reason":   {Kind: KindAccept, Tag: make([]byte, authTagLen), Reason: ReasonTimeout},
		"oversized share":      {Kind: KindShare, Share: make([]byte, MaxLen)},
	} {
		if _, err := m.MarshalBinary(); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestLargestShare: a share with the longest name, version and settings
// fits in one PAIR-HELLO frame.
func TestLargestShare(t *testing.T) {
	s := testSettings()
	s.Recovery, s.OnLineLoss = strings.Repeat("r", 40), strings.Repeat("o", 40)
	set, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	set = append(set, make([]byte, maxSettingsLen-len(set))...)
	ad := encodeAD(adFields{strings.Repeat("n", MaxNameLen), strings.Repeat("v", MaxSoftwareLen),
		make(ed25519.PublicKey, 32), set, make([]byte, 32)})
	m := Message{Kind: KindReply, Tag: make([]byte, cpace.TagLen), Share: cpace.PrefixFreeCat(make([]byte, cpace.ShareLen), ad)}
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > MaxLen-200 {
		t.Fatalf("largest reply is %d bytes, want a margin below %d", len(b), MaxLen)
	}
}

// FuzzUnmarshal feeds arbitrary bytes to UnmarshalBinary: it must not
// panic, must return a documented error, and what it accepts must encode
// back to the same bytes.
func FuzzUnmarshal(f *testing.F) {
	for _, m := range sampleMessages() {
		b, _ := m.MarshalBinary()
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{Version})
	f.Add([]byte{Version, byte(KindShare)})
	f.Add(append([]byte{Version, byte(KindReject)}, make([]byte, HeaderLen+authTagLen-1)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		var m Message
		if err := m.UnmarshalBinary(b); err != nil {
			if !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrVersion) {
				t.Fatalf("undocumented error %v", err)
			}
			return
		}
		out, err := m.MarshalBinary()
		if err != nil {
			t.Fatalf("accepted %x but cannot encode it: %v", b, err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", b, out)
		}
	})
}

func TestUnmarshalAllocs(t *testing.T) {
	b, _ := (&sampleMessages()[2]).MarshalBinary() // a reply: tag and share
	var m Message
	if n := testing.AllocsPerRun(100, func() { m.UnmarshalBinary(b) }); n > 1 {
		t.Fatalf("%v allocations per decode, want 1", n)
	}
}

// The names appear in `status --json` (pairing.state), the logbook and the
// console: every one, as other tools expect it.
func TestNamesKept(t *testing.T) {
	var got []string
	for i := range 8 {
		got = append(got, Kind(i).String())
	}
	for i := range lastReason + 1 {
		got = append(got, i.String())
	}
	for i := range 3 {
		got = append(got, Role(i).String())
	}
	for i := range 6 {
		got = append(got, State(i).String())
	}
	want := []string{"invalid", "hello", "share", "reply", "finish", "accept", "reject", "abort",
		"invalid", "wrong-code", "bad-message", "rejected", "timeout", "cancelled", "confirmation-failed", "too-many-attempts", "persist-failed",
		"invalid", "main", "spare",
		"invalid", "unpaired", "window", "joining", "pending", "paired"}
	if !slices.Equal(got, want) {
		t.Errorf("names\n%q\nwant\n%q", got, want)
	}
}
