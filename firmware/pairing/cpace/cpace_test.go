package cpace

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/gtank/ristretto255"
)

// Test vectors of draft-irtf-cfrg-cpace, appendix "Test vector for CPace
// using group ristretto255 and hash SHA-512", from the revision that writes
// MSGa = lv_cat(Ya, ADa). An older revision lists the same generator hash
// with g = 9c571217…; that value does not match the ristretto255 one-way
// map of RFC 9496 (which this package's map does match, see
// TestOneWayMapVector), so the later revision's vectors are used.
var vec = struct {
	prs, ci, sid, genStr, genHash, g   string
	ya, ad, yaPub, msgA                string
	yb, bd, ybPub, msgB                string
	k, iskIR, validS, validX, validOut string
	invalidY1, invalidY2               string
}{
	prs:    "50617373776f7264", // "Password"
	ci:     "0a41696e69746961746f720a42726573706f6e646572",
	sid:    "7e4b4791d6a8ef019b936c79fb7f2c57",
	genStr: "11435061636552697374726574746f3235350850617373776f726464" + strings.Repeat("00", 100) + "160a41696e69746961746f720a42726573706f6e646572107e4b4791d6a8ef019b936c79fb7f2c57",
	genHash: "a5ce446f63a1ae6d1fee80fa67d0b4004a4b1283ec5549a462bf33a6" +
		"c1ae06a0871f9bf48545f49b2a792eed255ac04f52758c9c60448306810b44e986e3dcbb",
	g:     "5e25411ca1ad7c9debfd0b33ad987a95cefef2d3f15dcc8bd26415a5dfe2e15a",
	ya:    "da3d23700a9e5699258aef94dc060dfda5ebb61f02a5ea77fad53f4ff0976d08",
	ad:    "414461",
	yaPub: "383a85dd236978f17f8c8545b50dabc52a39fcdab2cf8bc531ce040ff77ca82d",
	msgA:  "20383a85dd236978f17f8c8545b50dabc52a39fcdab2cf8bc531ce040ff77ca82d03414461",
	yb:    "d2316b454718c35362d83d69df6320f38578ed5984651435e2949762d900b80d",
	bd:    "414462",
	ybPub: "a6206309c0e8e5f579295e35997ac4300ab3fecec3c17f7b604f3e698fa1383c",
	msgB:  "20a6206309c0e8e5f579295e35997ac4300ab3fecec3c17f7b604f3e698fa1383c03414462",
	k:     "fa1d0318864e2cacb26875f1b791c9ae83204fe8359addb53e95a2e98893853f",
	iskIR: "e91ccb2c0f5e0d0993a33956e3be59754f3f2b07db57631f5394452ea2e7b435" +
		"4674eb1f5686c078462bf83bec72e8743df440108e638f3526d9b90e85be096f",
	validS:    "7cd0e075fa7955ba52c02759a6c90dbbfc10e6d40aea8d283e407d88cf538a05",
	validX:    "2c3c6b8c4f3800e7aef6864025b4ed79bd599117e427c41bd47d93d654b4a51c",
	validOut:  "7c13645fe790a468f62c39beb7388e541d8405d1ade69d1778c5fe3e7f6b600e",
	invalidY1: "2b3c6b8c4f3800e7aef6864025b4ed79bd599117e427c41bd47d93d654b4a51c",
	invalidY2: strings.Repeat("00", 32),
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func scalar(t *testing.T, s string) *ristretto255.Scalar {
	t.Helper()
	y := ristretto255.NewScalar()
	if err := y.Decode(unhex(t, s)); err != nil {
		t.Fatal(err)
	}
	return y
}

func TestPrependLenVectors(t *testing.T) {
	seq := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i)
		}
		return b
	}
	for _, c := range []struct {
		in   []byte
		want string // the prefix only
	}{{nil, "00"}, {[]byte("1234"), "04"}, {seq(127), "7f"}, {seq(128), "8001"}} {
		got := PrefixFreeCat(c.in)
		if want := append(unhex(t, c.want), c.in...); !bytes.Equal(got, want) {
			t.Errorf("prepend_len(%d bytes) = %x, want %x", len(c.in), got[:4], want[:4])
		}
	}
	got := PrefixFreeCat([]byte("1234"), []byte("5"), nil, []byte("6789"))
	if want := unhex(t, "04313233340135000436373839"); !bytes.Equal(got, want) {
		t.Errorf("prefix_free_cat = %x, want %x", got, want)
	}
}

// TestInvalidMessages: the draft's examples of messages whose prepended
// lengths do not add up to their length must be refused.
func TestInvalidMessages(t *testing.T) {
	for _, s := range []string{"ffffff", "ffff03", "00ffff03", "00ffffff"} {
		if _, _, err := ParseMessage(unhex(t, s)); !errors.Is(err, ErrMessage) {
			t.Errorf("ParseMessage(%s) = %v, want ErrMessage", s, err)
		}
	}
	if _, err := SplitPrefixFree(unhex(t, "0431323334"), 1); err != nil {
		t.Errorf("a valid single field was refused: %v", err)
	}
	if _, err := SplitPrefixFree(unhex(t, "043132333400"), 1); !errors.Is(err, ErrMessage) {
		t.Errorf("trailing byte accepted")
	}
}

func TestGeneratorVector(t *testing.T) {
	prs, ci, sid := unhex(t, vec.prs), unhex(t, vec.ci), unhex(t, vec.sid)
	if got := GeneratorString(prs, ci, sid); hex.EncodeToString(got) != vec.genStr {
		t.Fatalf("generator_string =\n%x\nwant\n%s", got, vec.genStr)
	}
	if got := Generator(prs, ci, sid).Encode(nil); hex.EncodeToString(got) != vec.g {
		t.Fatalf("g = %x, want %s", got, vec.g)
	}
}

func TestExchangeVector(t *testing.T) {
	prs, ci, sid := unhex(t, vec.prs), unhex(t, vec.ci), unhex(t, vec.sid)
	a := newWithScalar(scalar(t, vec.ya), true, prs, ci, sid, unhex(t, vec.ad))
	b := newWithScalar(scalar(t, vec.yb), false, prs, ci, sid, unhex(t, vec.bd))
	if got := hex.EncodeToString(a.Message()); got != vec.msgA {
		t.Errorf("MSGa = %s, want %s", got, vec.msgA)
	}
	if got := hex.EncodeToString(b.Message()); got != vec.msgB {
		t.Errorf("MSGb = %s, want %s", got, vec.msgB)
	}
	k, err := scalarMultVfy(a.y, unhex(t, vec.ybPub))
	if err != nil || hex.EncodeToString(k) != vec.k {
		t.Errorf("K = %x, %v; want %s", k, err, vec.k)
	}
	iskA, errA := a.Finish(b.Message())
	iskB, errB := b.Finish(a.Message())
	if errA != nil || errB != nil {
		t.Fatal(errA, errB)
	}
	if hex.EncodeToString(iskA) != vec.iskIR || !bytes.Equal(iskA, iskB) {
		t.Errorf("ISK_IR: A %x, B %x, want %s", iskA, iskB, vec.iskIR)
	}
}

func TestScalarMultVfyVectors(t *testing.T) {
	s := scalar(t, vec.validS)
	got, err := scalarMultVfy(s, unhex(t, vec.validX))
	if err != nil || hex.EncodeToString(got) != vec.validOut {
		t.Errorf("scalar_mult_vfy(valid) = %x, %v; want %s", got, err, vec.validOut)
	}
	for _, y := range []string{vec.invalidY1, vec.invalidY2} {
		if _, err := scalarMultVfy(s, unhex(t, y)); !errors.Is(err, ErrShare) {
			t.Errorf("scalar_mult_vfy(%s) = %v, want ErrShare", y, err)
		}
	}
	// A party must abort when the peer's message carries such a point.
	p, err := New(rand.Reader, true, []byte("12345678"), nil, []byte("sid"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, y := range []string{vec.invalidY1, vec.invalidY2} {
		if _, err := p.Finish(PrefixFreeCat(unhex(t, y), nil)); !errors.Is(err, ErrShare) {
			t.Errorf("Finish with share %s = %v, want ErrShare", y, err)
		}
	}
}

func TestConfirmation(t *testing.T) {
	run := func(prsA, prsB string) (iskA, iskB []byte, a, b *Party) {
		sid, ci := []byte("0123456789abcdef"), []byte("ci")
		a, _ = New(rand.Reader, true, []byte(prsA), ci, sid, []byte("a"))
		b, _ = New(rand.Reader, false, []byte(prsB), ci, sid, []byte("b"))
		iskA, _ = a.Finish(b.Message())
		iskB, _ = b.Finish(a.Message())
		return
	}
	iskA, iskB, a, b := run("12345678", "12345678")
	if !CheckTag(iskA, b.Message(), Tag(iskB, b.Message())) || !CheckTag(iskB, a.Message(), Tag(iskA, a.Message())) {
		t.Fatal("tags of an honest exchange do not check")
	}
	if CheckTag(iskA, a.Message(), Tag(iskB, b.Message())) {
		t.Fatal("a tag over B's message checks as a tag over A's: reflection possible")
	}
	iskA, iskB, a, b = run("12345678", "12345679")
	if bytes.Equal(iskA, iskB) || CheckTag(iskA, b.Message(), Tag(iskB, b.Message())) {
		t.Fatal("different passwords confirmed")
	}
}

// TestOneWayMapVector pins the ristretto255 one-way map (element
// derivation from 64 uniform bytes) to the RFC 9496 / libsodium vector,
// the map the generator depends on.
func TestOneWayMapVector(t *testing.T) {
	in := unhex(t, "5d1be09e3d0c82fc538112490e35701979d99e06ca3e2b5b54bffe8b4dc772c1"+
		"4d98b696a1bbfb5ca32c436cc61c16563790306c79eaca7705668b47dffe5bb6")
	got := ristretto255.NewElement().FromUniformBytes(in).Encode(nil)
	if want := "3066f82a1a747d45120d1740f14358531a8f04bbffe6a819f86dfe50f44a0a46"; hex.EncodeToString(got) != want {
		t.Fatalf("one_way_map = %x, want %s", got, want)
	}
}
