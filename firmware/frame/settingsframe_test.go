package frame

import (
	"bytes"
	"errors"
	"testing"
)

func testSettings(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + 1)
	}
	return b
}

// Settings of every length split into parts, travel as 116-byte frames
// and are put together again, whatever the order of the parts.
func TestSettingsRoundTrip(t *testing.T) {
	key := NewKey(testSecret)
	for _, n := range []int{1, SettingsPartLen, SettingsPartLen + 1, 311, SettingsMaxLen} {
		settings := testSettings(n)
		parts, err := SettingsParts(settings, SettingsPart{PairID: key.PairID(), NodeID: 7, BootID: 3})
		if err != nil {
			t.Fatal(err)
		}
		if len(parts) != (n+SettingsPartLen-1)/SettingsPartLen {
			t.Fatalf("%d bytes: %d parts", n, len(parts))
		}
		var asm SettingsAssembler
		var got []byte
		for i := len(parts) - 1; i >= 0; i-- { // backwards
			parts[i].Seq = uint64(100 + i)
			b, err := parts[i].AppendBinary(nil, key)
			if err != nil {
				t.Fatal(err)
			}
			if len(b) != Len || !IsSettingsFrame(b) || IsPairFrame(b) {
				t.Fatalf("%d bytes, part %d: frame of %d bytes", n, i, len(b))
			}
			var p SettingsPart
			if err := DecodeSettings(append(b, 0, 0), key, &p); err != nil { // with Ethernet padding
				t.Fatal(err)
			}
			if p.Seq != uint64(100+i) || p.NodeID != 7 || p.BootID != 3 || !bytes.Equal(p.Data, parts[i].Data) {
				t.Fatalf("part %d decoded as %+v", i, p)
			}
			if got = asm.Add(&p); got != nil && i != 0 {
				t.Fatalf("settings complete after part %d of %d", i, len(parts))
			}
		}
		if !bytes.Equal(got, settings) {
			t.Fatalf("%d bytes: assembled %d bytes", n, len(got))
		}
	}
	if _, err := SettingsParts(testSettings(SettingsMaxLen+1), SettingsPart{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("too long: %v", err)
	}
	if _, err := SettingsParts(nil, SettingsPart{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty: %v", err)
	}
}

// Parts of two different settings are never mixed: a part of other
// settings starts over, and a complete set that does not match its digest
// is not delivered.
func TestSettingsAssemblerNoMix(t *testing.T) {
	a, _ := SettingsParts(testSettings(100), SettingsPart{NodeID: 1})
	bs := testSettings(100)
	bs[99] ^= 1
	b, _ := SettingsParts(bs, SettingsPart{NodeID: 1})
	var asm SettingsAssembler
	if asm.Add(&a[0]) != nil || asm.Add(&b[1]) != nil || asm.Add(&a[2]) != nil {
		t.Fatal("delivered before complete")
	}
	if got := asm.Add(&b[0]); got != nil { // b[1] was dropped when a[2] came
		t.Fatalf("delivered a mix: %x", got)
	}
	if got := asm.Add(&b[2]); got != nil {
		t.Fatalf("delivered without b[1]: %x", got)
	}
	if got := asm.Add(&b[1]); !bytes.Equal(got, bs) {
		t.Fatalf("b not delivered: %x", got)
	}
	forged := a[1]
	forged.Data = bytes.Clone(forged.Data)
	forged.Data[0] ^= 1
	asm.Add(&a[0])
	asm.Add(&forged)
	if got := asm.Add(&a[2]); got != nil {
		t.Fatal("delivered settings that do not match their digest")
	}
}

// A settings frame is not a heartbeat, a heartbeat is not a settings
// frame, and the decoder checks the pair, the authenticator and the
// placement.
func TestSettingsDecodeRejects(t *testing.T) {
	key := NewKey(testSecret)
	parts, _ := SettingsParts(testSettings(100), SettingsPart{PairID: key.PairID(), NodeID: 1})
	good, _ := parts[2].AppendBinary(nil, key)
	var f Frame
	if err := Decode(good, key, &f); !errors.Is(err, ErrMalformed) {
		t.Fatalf("Decode(settings frame) = %v, want ErrMalformed", err)
	}
	hb := mustEncode(t, testFrame(), key)
	var p SettingsPart
	if IsSettingsFrame(hb) {
		t.Fatal("a heartbeat looks like a settings frame")
	}
	if err := DecodeSettings(hb, key, &p); !errors.Is(err, ErrMalformed) {
		t.Fatalf("DecodeSettings(heartbeat) = %v, want ErrMalformed", err)
	}
	reseal := func(b []byte) []byte { key.seal(b[:Len]); return b }
	mod := func(f func(b []byte)) []byte { b := bytes.Clone(good); f(b); return reseal(b) }
	for name, c := range map[string]struct {
		b    []byte
		want error
	}{
		"other pair": {func() []byte {
			other := NewKey([]byte("another key"))
			p := parts[0]
			p.PairID = other.PairID()
			b, _ := p.AppendBinary(nil, other)
			return b
		}(), ErrPair},
		"tampered":      {func() []byte { b := bytes.Clone(good); b[60] ^= 1; return b }(), ErrAuth},
		"cut":           {good[:Len-1], ErrShort},
		"index":         {mod(func(b []byte) { b[offSetIndex] = 3 }), ErrMalformed},
		"count":         {mod(func(b []byte) { b[offSetCount] = 4 }), ErrMalformed},
		"total zero":    {mod(func(b []byte) { b[offSetTotal], b[offSetTotal+1] = 0, 0 }), ErrMalformed},
		"padding":       {mod(func(b []byte) { b[offAuth-1] = 1 }), ErrMalformed},
		"flags":         {mod(func(b []byte) { b[offFlags+1] = 1 }), ErrMalformed},
		"v1 of type 4":  {mod(func(b []byte) { b[offVersion] = 1 }), ErrMalformed},
		"wrong length":  {mod(func(b []byte) { b[offLength+1] = 100 }), ErrMalformed},
		"not a setting": {hb, ErrMalformed},
	} {
		if err := DecodeSettings(c.b, key, &p); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
}

// settingsFrame is an authenticated settings frame, a seed of the fuzzers.
func settingsFrame(t testing.TB, key *Key) []byte {
	t.Helper()
	parts, err := SettingsParts(testSettings(100), SettingsPart{PairID: key.PairID(), NodeID: 5, BootID: 2, Seq: 9})
	if err != nil {
		t.Fatal(err)
	}
	b, err := parts[2].AppendBinary(nil, key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzDecodeSettings feeds arbitrary payloads to DecodeSettings and
// UnmarshalBinary: they must not panic, must return one of the
// documented errors, and a part they accept encodes back to the same
// bytes and is accepted by the assembler's checks.
func FuzzDecodeSettings(f *testing.F) {
	key := NewKey(testSecret)
	good := settingsFrame(f, key)
	f.Add(good)
	f.Add(append(bytes.Clone(good), 0, 0, 0))
	f.Add(mustEncode(f, testFrame(), key))
	f.Add([]byte("PG\x02\x04\x00\x74"))
	known := []error{ErrShort, ErrMagic, ErrAuth, ErrPair, ErrMalformed}
	f.Fuzz(func(t *testing.T, b []byte) {
		for name, decode := range map[string]func(*SettingsPart) error{
			"DecodeSettings":  func(p *SettingsPart) error { return DecodeSettings(b, key, p) },
			"UnmarshalBinary": func(p *SettingsPart) error { return p.UnmarshalBinary(b) },
		} {
			var p SettingsPart
			err := decode(&p)
			if err != nil {
				ok := false
				for _, k := range known {
					ok = ok || errors.Is(err, k)
				}
				if !ok {
					t.Fatalf("%s: undocumented error %v", name, err)
				}
				continue
			}
			if p.valid() != nil {
				t.Fatalf("%s accepted a misplaced part %+v", name, p)
			}
			var k *Key
			if name == "DecodeSettings" {
				k = key
			}
			out, err := p.AppendBinary(nil, k)
			if err != nil {
				t.Fatalf("%s accepted a part AppendBinary refuses: %v", name, err)
			}
			in := bytes.Clone(b[:Len])
			if k == nil {
				clear(in[offAuth:])
			}
			if !bytes.Equal(out, in) {
				t.Fatalf("%s round trip:\n in % x\nout % x", name, in, out)
			}
		}
	})
}
