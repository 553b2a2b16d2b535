package hmackey

import (
	"crypto/hmac"
	"crypto/sha256"
	"testing"
)

func TestSealVerify(t *testing.T) {
	m := New([]byte("secret"))
	for _, tagLen := range []int{16, sha256.Size} {
		b := append([]byte("a message of some length"), make([]byte, tagLen)...)
		m.Seal(b, tagLen)
		h := hmac.New(sha256.New, []byte("secret"))
		h.Write(b[:len(b)-tagLen])
		if want := h.Sum(nil)[:tagLen]; !hmac.Equal(want, b[len(b)-tagLen:]) {
			t.Fatalf("tag %d: sealed %x, want %x", tagLen, b[len(b)-tagLen:], want)
		}
		if !m.Verify(b, tagLen) {
			t.Fatalf("tag %d: own seal refused", tagLen)
		}
		b[0] ^= 1
		if m.Verify(b, tagLen) {
			t.Fatalf("tag %d: a changed message verified", tagLen)
		}
		b[0] ^= 1
		if New([]byte("other")).Verify(b, tagLen) {
			t.Fatalf("tag %d: another key verified", tagLen)
		}
	}
	if n := testing.AllocsPerRun(100, func() {
		b := make([]byte, 64)
		m.Seal(b, 16)
		m.Verify(b, 16)
	}); n > 1 { // the test's own buffer
		t.Fatalf("%v allocations per seal and verify", n)
	}
}
