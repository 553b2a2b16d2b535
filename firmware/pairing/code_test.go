package pairing

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"testing"
)

func TestParseCode(t *testing.T) {
	for in, want := range map[string]Code{
		"1234-5678": "12345678", "12345678": "12345678", " 0000-0001\n": "00000001",
	} {
		got, err := ParseCode(in)
		if err != nil || got != want {
			t.Errorf("ParseCode(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "1234-567", "1234--5678", "12-345678", "1234567a", "123456789", "１２３４５６７８", "1234 5678"} {
		if got, err := ParseCode(in); err == nil {
			t.Errorf("ParseCode(%q) = %q, want an error", in, got)
		}
	}
	if s := Code("00420017").String(); s != "0042-0017" {
		t.Errorf("String = %q", s)
	}
}

// TestNewCodeRejectsBias: values at or above the largest multiple of 10^8
// below 2^32 are drawn again, so every code is equally likely.
func TestNewCodeRejectsBias(t *testing.T) {
	var in bytes.Buffer
	for _, v := range []uint32{0xffffffff, 4_200_000_000, 1_234_567_890} {
		binary.Write(&in, binary.BigEndian, v)
	}
	c, err := NewCode(&in)
	if err != nil {
		t.Fatal(err)
	}
	if c != "34567890" {
		t.Fatalf("code = %q, want the third draw 1234567890 mod 10^8", c)
	}
	if _, err := NewCode(bytes.NewReader(nil)); err == nil {
		t.Fatal("an exhausted random source gave a code")
	}
	for range 100 {
		c, err := NewCode(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseCode(c.String()); err != nil {
			t.Fatalf("generated code %q does not parse: %v", c, err)
		}
	}
}
