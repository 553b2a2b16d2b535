package frame

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestPairRoundTrip(t *testing.T) {
	for _, n := range []int{1, 50, PairMaxPayload} {
		payload := bytes.Repeat([]byte{0xa5}, n)
		b, err := AppendPair(nil, payload)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != PairHeaderLen+n || !IsPairFrame(b) {
			t.Fatalf("%d: frame of %d bytes, IsPairFrame %v", n, len(b), IsPairFrame(b))
		}
		padded := append(bytes.Clone(b), make([]byte, 30)...) // Ethernet padding
		got, err := DecodePair(padded)
		if err != nil || !bytes.Equal(got, payload) {
			t.Fatalf("%d: DecodePair = %d bytes, %v", n, len(got), err)
		}
	}
}

func TestAppendPairRejects(t *testing.T) {
	for _, n := range []int{0, PairMaxPayload + 1} {
		if _, err := AppendPair(nil, make([]byte, n)); !errors.Is(err, ErrInvalid) {
			t.Errorf("payload of %d bytes: %v, want ErrInvalid", n, err)
		}
	}
}

// A heartbeat is not a pairing frame and a pairing frame is not a
// heartbeat: each decoder refuses the other's frames.
func TestPairAndHeartbeatApart(t *testing.T) {
	key := NewKey(testSecret)
	hb := mustEncode(t, testFrame(), key)
	if IsPairFrame(hb) {
		t.Fatal("a heartbeat looks like a pairing frame")
	}
	if _, err := DecodePair(hb); !errors.Is(err, ErrMalformed) {
		t.Fatalf("DecodePair(heartbeat) = %v, want ErrMalformed", err)
	}
	for _, n := range []int{40, Len - PairHeaderLen, 600} {
		p, _ := AppendPair(nil, make([]byte, n))
		var f Frame
		if err := Decode(p, key, &f); err == nil {
			t.Fatalf("Decode accepted a pairing frame of %d bytes", n)
		}
	}
}

func TestDecodePairErrors(t *testing.T) {
	good, _ := AppendPair(nil, []byte("hello"))
	mod := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, io.ErrUnexpectedEOF},
		{"header only", good[:PairHeaderLen-1], ErrShort},
		{"magic", mod(func(b []byte) []byte { b[0] = 'X'; return b }), ErrMagic},
		{"version", mod(func(b []byte) []byte { b[2] = 2; return b }), ErrMalformed},
		{"type", mod(func(b []byte) []byte { b[3] = 1; return b }), ErrMalformed},
		{"length zero payload", mod(func(b []byte) []byte { b[4], b[5] = 0, PairHeaderLen; return b }), ErrMalformed},
		{"length huge", mod(func(b []byte) []byte { b[4], b[5] = 0xff, 0xff; return b }), ErrMalformed},
		{"length beyond", mod(func(b []byte) []byte { b[5]++; return b }), ErrShort},
		{"reserved", mod(func(b []byte) []byte { b[9] = 1; return b }), ErrMalformed},
	} {
		if _, err := DecodePair(tc.b); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

// FuzzDecodePair: no panic, only documented errors, an accepted frame
// re-encodes to the same bytes (padding cut).
func FuzzDecodePair(f *testing.F) {
	good, _ := AppendPair(nil, []byte("a pairing message"))
	f.Add(good)
	f.Add(append(bytes.Clone(good), 0, 0, 0))
	f.Add(good[:PairHeaderLen])
	f.Add([]byte("PG\x01\x03\xff\xff"))
	f.Add(mustEncode(f, testFrame(), NewKey(testSecret)))
	known := []error{ErrShort, ErrMagic, ErrMalformed}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := DecodePair(b)
		if err != nil {
			for _, k := range known {
				if errors.Is(err, k) {
					return
				}
			}
			t.Fatalf("undocumented error %v", err)
		}
		if !IsPairFrame(b) {
			t.Fatal("decoded a frame IsPairFrame refuses")
		}
		again, err := AppendPair(nil, p)
		if err != nil || !bytes.Equal(again, b[:len(again)]) {
			t.Fatalf("re-encoding: %v", err)
		}
	})
}
