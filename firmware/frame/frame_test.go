package frame

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"hash"
	"io"
	"testing"

	"github.com/pairguard/pairguard/firmware/frame/hmackey"
)

var testSecret = []byte("correct horse battery staple")

func testFrame() Frame {
	return Frame{
		Version:       ProtocolVersion,
		Type:          TypeHeartbeat,
		Flags:         FlagPreferred | FlagLAN1,
		PairID:        PairID(testSecret),
		NodeID:        0x0102030405060708,
		Mode:          2,
		Role:          2,
		DataState:     1,
		MirrorState:   4,
		MirrorPercent: 100,
		Epoch:         7,
		BootID:        42,
		Seq:           1000,
		Generation:    0xdeadbeef,
		History:       0xcafe,
		Nonce:         0x1122334455667788,
		Echo:          0x8877665544332211,
		Software:      "0.1.0",
	}
}

func mustEncode(t testing.TB, f Frame, key *Key) []byte {
	t.Helper()
	b, err := f.AppendBinary(nil, key)
	if err != nil {
		t.Fatalf("AppendBinary: %v", err)
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	key := NewKey(testSecret)
	for _, typ := range []Type{TypeHeartbeat, TypeRelease, TypePairHello} {
		for _, sw := range []string{"", "0.1.0", "0123456789abcdef"} {
			want := testFrame()
			want.Type = typ
			want.Software = sw
			b := mustEncode(t, want, key)
			if len(b) != Len {
				t.Fatalf("len = %d, want %d", len(b), Len)
			}
			var got Frame
			if err := Decode(b, key, &got); err != nil {
				t.Fatalf("Decode(%v, %q): %v", typ, sw, err)
			}
			if got != want {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
			}
		}
	}
}

func TestLayout(t *testing.T) {
	f := testFrame()
	b := mustEncode(t, f, nil)
	checks := []struct {
		name string
		off  int
		want []byte
	}{
		{"magic", 0, []byte("PG")},
		{"version", 2, []byte{2}},
		{"type", 3, []byte{1}},
		{"length", 4, []byte{0, Len}},
		{"flags", 6, []byte{0, 0x05}},
		{"node", 12, []byte{1, 2, 3, 4, 5, 6, 7, 8}},
		{"states", 20, []byte{2, 2, 1, 4, 100, 5, 0, 0}},
		{"epoch", 28, []byte{0, 0, 0, 0, 0, 0, 0, 7}},
		{"pair", 8, binary.BigEndian.AppendUint32(nil, PairID(testSecret))},
		{"boot", 36, []byte{0, 0, 0, 0, 0, 0, 0, 42}},
		{"seq", 44, []byte{0, 0, 0, 0, 0, 0, 0x03, 0xe8}},
		{"generation", 52, []byte{0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef}},
		{"history", 60, []byte{0, 0, 0, 0, 0, 0, 0xca, 0xfe}},
		{"nonce", 68, []byte{0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88}},
		{"echo", 76, []byte{0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11}},
		{"software", 84, []byte("0.1.0\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00")},
		{"auth zero without key", 100, make([]byte, 16)},
	}
	for _, c := range checks {
		if got := b[c.off : c.off+len(c.want)]; !bytes.Equal(got, c.want) {
			t.Errorf("%s at %d = % x, want % x", c.name, c.off, got, c.want)
		}
	}
}

func TestAppendKeepsPrefix(t *testing.T) {
	f := testFrame()
	key := NewKey(testSecret)
	b, err := f.AppendBinary([]byte{0xaa, 0xbb}, key)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 2+Len || b[0] != 0xaa || b[1] != 0xbb {
		t.Fatalf("prefix lost: % x", b[:4])
	}
	var got Frame
	if err := Decode(b[2:], key, &got); err != nil {
		t.Fatal(err)
	}
}

func TestAppendInvalid(t *testing.T) {
	for name, mod := range map[string]func(*Frame){
		"zero type":     func(f *Frame) { f.Type = 0 },
		"unknown type":  func(f *Frame) { f.Type = 9 },
		"long software": func(f *Frame) { f.Software = "0123456789abcdefg" },
	} {
		f := testFrame()
		mod(&f)
		if _, err := f.AppendBinary(nil, nil); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
}

// reseal recomputes the authenticator of a frame after a test edited it.
func reseal(key *Key, b []byte) []byte {
	n := int(binary.BigEndian.Uint16(b[offLength:]))
	key.seal(b[:n])
	return b
}

func TestDecodeErrors(t *testing.T) {
	key := NewKey(testSecret)
	other := NewKey([]byte("another pair"))
	good := func() []byte { return mustEncode(t, testFrame(), key) }
	foreign := testFrame()
	foreign.PairID++

	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"nil", nil, ErrShort},
		{"eleven bytes", []byte("PG\x02\x01\x00\x74\x00\x00\x00\x00\x00"), ErrShort},
		{"truncated", good()[:Len-1], ErrShort},
		{"length field too small", func() []byte { b := good(); b[5] = Len - 1; return b }(), ErrMalformed},
		{"length field too large", func() []byte { b := good(); binary.BigEndian.PutUint16(b[4:], Len+1); return b }(), ErrMalformed},
		{"length field of version 1", func() []byte { b := good(); binary.BigEndian.PutUint16(b[4:], 100); return b }(), ErrMalformed},
		{"length field 0xffff", func() []byte { b := good(); binary.BigEndian.PutUint16(b[4:], 0xffff); return b }(), ErrMalformed},
		{"version 0", func() []byte { b := good(); b[2] = 0; return b }(), ErrMalformed},
		{"unknown version beyond MaxLen", func() []byte {
			b := append(good(), make([]byte, MaxLen)...)
			b[2] = 9
			binary.BigEndian.PutUint16(b[4:], MaxLen+1)
			return b
		}(), ErrMalformed},
		{"unknown version below minimum", func() []byte { b := good(); b[2] = 9; b[4], b[5] = 0, minLen-1; return b }(), ErrMalformed},
		{"magic", func() []byte { b := good(); b[0] = 'X'; return b }(), ErrMagic},
		{"ipv4 packet", append([]byte{0x45, 0}, make([]byte, 98)...), ErrMagic},
		{"wrong key", mustEncode(t, testFrame(), other), ErrAuth},
		{"no key", mustEncode(t, testFrame(), nil), ErrAuth},
		{"bit flip in body", func() []byte { b := good(); b[offEpoch+7] ^= 1; return b }(), ErrAuth},
		{"bit flip in nonce", func() []byte { b := good(); b[offNonce] ^= 1; return b }(), ErrAuth},
		{"bit flip in auth", func() []byte { b := good(); b[Len-1] ^= 0x80; return b }(), ErrAuth},
		{"version 3 unsealed", func() []byte { b := good(); b[2] = 3; return b }(), ErrAuth},
		{"version 3 sealed", func() []byte { b := good(); b[2] = 3; return reseal(key, b) }(), ErrVersion},
		{"version 3 short sealed", func() []byte {
			b := good()[:minLen]
			b[2] = 3
			binary.BigEndian.PutUint16(b[4:], minLen)
			return reseal(key, b)
		}(), ErrVersion},
		{"version 1 sealed", func() []byte {
			b := good()[:100]
			b[2] = 1
			binary.BigEndian.PutUint16(b[4:], 100)
			return reseal(key, b)
		}(), ErrVersion},
		{"foreign pair", mustEncode(t, foreign, key), ErrPair},
		{"foreign pair unsealed", mustEncode(t, foreign, nil), ErrPair},
		{"type zero sealed", func() []byte { b := good(); b[3] = 0; return reseal(key, b) }(), ErrMalformed},
		{"software length 17 sealed", func() []byte { b := good(); b[offSoftLen] = 17; return reseal(key, b) }(), ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f Frame
			err := Decode(tt.b, key, &f)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Decode = %v, want %v", err, tt.want)
			}
			if f != (Frame{}) {
				t.Errorf("frame written on error: %+v", f)
			}
		})
	}
}

func TestShortIsUnexpectedEOF(t *testing.T) {
	var f Frame
	if err := Decode([]byte("PG"), NewKey(testSecret), &f); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err = %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestVersionError(t *testing.T) {
	key := NewKey(testSecret)
	b := mustEncode(t, Frame{Version: 3, Type: TypeHeartbeat, PairID: key.PairID()}, key)
	var f Frame
	err := Decode(b, key, &f)
	var ve *VersionError
	if !errors.As(err, &ve) || ve.Version != 3 {
		t.Fatalf("err = %#v, want *VersionError{3}", err)
	}
	if !errors.Is(err, ErrVersion) {
		t.Fatal("VersionError is not ErrVersion")
	}
}

// countingHash counts the bytes the authenticator hashes.
type countingHash struct {
	hash.Hash
	n *int
}

func (c countingHash) Write(p []byte) (int, error) { *c.n += len(p); return c.Hash.Write(p) }

// The cheap checks come before the HMAC: a flood of frames of the wrong
// length, magic or pair id costs no hashing at all.
func TestNoHMACBeforeCheapChecks(t *testing.T) {
	hashed := 0
	key := NewKey(testSecret)
	key.mac = hmackey.NewHash(countingHash{hmac.New(sha256.New, testSecret), &hashed})
	good := mustEncode(t, testFrame(), key)
	foreign := testFrame()
	foreign.PairID++
	for name, b := range map[string][]byte{
		"wrong length": func() []byte {
			b := append(bytes.Clone(good), make([]byte, 1400)...)
			b[4], b[5] = 0x05, 0xdc
			return b
		}(),
		"short":        good[:Len-1],
		"magic":        append([]byte("XX"), good[2:]...),
		"foreign pair": mustEncode(t, foreign, nil),
		"version 0":    append([]byte{'P', 'G', 0}, good[3:]...),
	} {
		hashed = 0
		var f Frame
		if err := Decode(b, key, &f); err == nil || hashed != 0 {
			t.Errorf("%s: err %v after hashing %d bytes, want an error before the HMAC", name, err, hashed)
		}
	}
	hashed = 0
	var f Frame
	if err := Decode(append(bytes.Clone(good), make([]byte, 1000)...), key, &f); err != nil || hashed != Len-AuthLen {
		t.Errorf("padded frame: err %v, hashed %d bytes, want %d", err, hashed, Len-AuthLen)
	}
}

func TestPadding(t *testing.T) {
	key := NewKey(testSecret)
	want := testFrame()
	b := mustEncode(t, want, key)
	for _, pad := range [][]byte{{0}, make([]byte, 46), bytes.Repeat([]byte{0xff}, 1400)} {
		var got Frame
		if err := Decode(append(bytes.Clone(b), pad...), key, &got); err != nil {
			t.Fatalf("Decode with %d bytes of padding: %v", len(pad), err)
		}
		if got != want {
			t.Fatalf("got %+v", got)
		}
	}
}

func TestMarshalUnmarshal(t *testing.T) {
	want := testFrame()
	b, err := want.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var got Frame
	if err := got.UnmarshalBinary(append(b, 0, 0, 0)); err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("got %+v", got)
	}
	b[0] = 0
	if err := got.UnmarshalBinary(b); !errors.Is(err, ErrMagic) {
		t.Fatalf("err = %v", err)
	}
}

func TestPairID(t *testing.T) {
	a, b := PairID([]byte("a")), PairID([]byte("b"))
	if a == b {
		t.Fatalf("PairID collides: %08x", a)
	}
	if NewKey([]byte("a")).PairID() != a {
		t.Fatal("Key.PairID differs from PairID")
	}
}

func TestStrings(t *testing.T) {
	for v, want := range map[Type]string{0: "invalid", TypeHeartbeat: "heartbeat", TypeRelease: "release", TypePairHello: "pair-hello", TypeSettings: "settings", 7: "Type(7)"} {
		if got := v.String(); got != want {
			t.Errorf("Type(%d) = %q, want %q", uint8(v), got, want)
		}
	}
	for v, want := range map[Flags]string{0: "none", FlagPreferred | FlagForced: "preferred|forced", FlagLAN1 | 0x100: "lan1|0x100"} {
		if got := v.String(); got != want {
			t.Errorf("Flags(%#x) = %q, want %q", uint16(v), got, want)
		}
	}
}

// Dropping garbage allocates nothing, whatever check refuses it.
func TestDropPathZeroAllocs(t *testing.T) {
	key := NewKey(testSecret)
	good := mustEncode(t, testFrame(), key)
	foreign := testFrame()
	foreign.PairID++
	for name, b := range map[string][]byte{
		"short": good[:5], "cut": good[:Len-1], "magic": append([]byte("XX"), good[2:]...),
		"length":  func() []byte { b := bytes.Clone(good); b[5]++; return b }(),
		"foreign": mustEncode(t, foreign, key),
		"forged":  func() []byte { b := bytes.Clone(good); b[Len-1] ^= 1; return b }(),
	} {
		var f Frame
		if n := testing.AllocsPerRun(100, func() { _ = Decode(b, key, &f) }); n != 0 {
			t.Errorf("%s: %v allocations per dropped frame", name, n)
		}
	}
}

func TestZeroAllocs(t *testing.T) {
	key := NewKey(testSecret)
	f := testFrame()
	buf := make([]byte, 0, Len)
	var err error
	if n := testing.AllocsPerRun(1000, func() {
		f.Seq++
		buf, err = f.AppendBinary(buf[:0], key)
	}); n != 0 || err != nil {
		t.Fatalf("AppendBinary: %v allocs per frame, err %v", n, err)
	}
	var got Frame
	if n := testing.AllocsPerRun(1000, func() {
		err = Decode(buf, key, &got)
	}); n != 0 || err != nil {
		t.Fatalf("Decode: %v allocs per frame, err %v", n, err)
	}
	r := NewReplay()
	if n := testing.AllocsPerRun(1000, func() {
		f.Seq++
		err = r.Check(f.NodeID, f.BootID, f.Seq)
	}); n != 0 || err != nil {
		t.Fatalf("Replay.Check: %v allocs per frame, err %v", n, err)
	}
}

func BenchmarkAppendBinary(b *testing.B) {
	key := NewKey(testSecret)
	f := testFrame()
	buf := make([]byte, 0, Len)
	b.ReportAllocs()
	b.SetBytes(Len)
	for b.Loop() {
		f.Seq++
		buf, _ = f.AppendBinary(buf[:0], key)
	}
}

// BenchmarkDecodeGarbage measures the drop path of a flood: frames that a
// socket filter would pass (right magic and pair id) but whose length is
// wrong, and forged frames of the right length (one HMAC each).
func BenchmarkDecodeGarbage(b *testing.B) {
	key := NewKey(testSecret)
	good := mustEncode(b, testFrame(), key)
	long := append(bytes.Clone(good), make([]byte, 1500-Len)...)
	binary.BigEndian.PutUint16(long[offLength:], 1500)
	forged := bytes.Clone(good)
	forged[offAuth] ^= 1
	foreign := bytes.Clone(good)
	foreign[offPair] ^= 1
	for _, c := range []struct {
		name string
		b    []byte
	}{{"magic", append([]byte("XX"), good[2:]...)}, {"foreign", foreign}, {"length1500", long}, {"forged", forged}} {
		b.Run(c.name, func(b *testing.B) {
			var f Frame
			b.ReportAllocs()
			for b.Loop() {
				if Decode(c.b, key, &f) == nil {
					b.Fatal("garbage accepted")
				}
			}
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	key := NewKey(testSecret)
	buf := mustEncode(b, testFrame(), key)
	var f Frame
	b.ReportAllocs()
	b.SetBytes(Len)
	for b.Loop() {
		if err := Decode(buf, key, &f); err != nil {
			b.Fatal(err)
		}
	}
}

func TestKeyConcurrent(t *testing.T) {
	key := NewKey(testSecret)
	done := make(chan error)
	for g := range 4 {
		go func() {
			f := testFrame()
			f.NodeID = uint64(g)
			buf := make([]byte, 0, Len)
			var got Frame
			for i := range 500 {
				f.Seq = uint64(i)
				var err error
				if buf, err = f.AppendBinary(buf[:0], key); err == nil {
					err = Decode(buf, key, &got)
				}
				if err == nil && got != f {
					err = errors.New("frame changed under concurrent use")
				}
				if err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
