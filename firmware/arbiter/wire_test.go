package arbiter

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"slices"
	"testing"
	"time"
)

var testPairKey = []byte("0123456789abcdef-pair-key")

func testKey() *Key { return NewKey(DeriveKey(testPairKey)) }

func testRequest(k *Key) Request {
	return Request{
		Type: RequestAcquire, Pair: k.PairID(), Node: 0x1122334455667788, Counter: 42,
		Nonce: [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
		Epoch: 9, Generation: 0xabc, History: 0xab, TTL: 1500 * time.Millisecond,
		Mode: ModeSpare, Role: RoleSecondary, Data: DataUpToDate, PeerHeard: true,
	}
}

func testReply(k *Key) Reply {
	return Reply{
		Type: ReplyDeny, Pair: k.PairID(), Node: 0x1122334455667788,
		Nonce:  [16]byte{16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1},
		Holder: 3, Epoch: 7, Floor: 43, RetryAfter: 1199 * time.Millisecond, Reason: ReasonHeld,
	}
}

func TestDeriveKey(t *testing.T) {
	// RFC 5869 HKDF-SHA256, empty salt, info "pairguard arbiter key v1",
	// computed independently.
	want := "a0763d2a8f8e9a9693e4a510371216c80a522aa516e91011331c3bdb0ae033bc"
	got := DeriveKey(testPairKey)
	if hex.EncodeToString(got) != want {
		t.Fatalf("DeriveKey = %x, want %s", got, want)
	}
	if bytes.Contains(got, testPairKey) || bytes.Equal(DeriveKey(got), got) {
		t.Error("the arbiter key reveals the pair key")
	}
	if PairID(got) == PairID(DeriveKey([]byte("another pair key, 16+"))) {
		t.Error("two keys, one pair id")
	}
}

func TestRequestRoundTrip(t *testing.T) {
	k := testKey()
	in := testRequest(k)
	b, err := in.Append(nil, k)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != RequestLen {
		t.Fatalf("len %d, want %d", len(b), RequestLen)
	}
	if id, err := RequestPair(b); err != nil || id != k.PairID() {
		t.Fatalf("RequestPair = %08x, %v", id, err)
	}
	var out Request
	if err := DecodeRequest(b, k, &out); err != nil {
		t.Fatal(err)
	}
	if out != in {
		t.Fatalf("decoded %+v, want %+v", out, in)
	}
}

func TestReplyRoundTrip(t *testing.T) {
	k := testKey()
	for _, in := range []Reply{testReply(k), {Type: ReplyGrant, Pair: k.PairID(), Node: 1, Holder: 1, Epoch: 2, TTL: time.Second}} {
		b, err := in.Append(nil, k)
		if err != nil {
			t.Fatal(err)
		}
		var out Reply
		if err := DecodeReply(b, k, &out); err != nil {
			t.Fatal(err)
		}
		if out != in {
			t.Fatalf("decoded %+v, want %+v", out, in)
		}
	}
}

func TestRetryAfterRoundsUp(t *testing.T) {
	k := testKey()
	r := testReply(k)
	r.RetryAfter = 1500 * time.Microsecond
	b, _ := r.Append(nil, k)
	var out Reply
	if err := DecodeReply(b, k, &out); err != nil || out.RetryAfter != 2*time.Millisecond {
		t.Fatalf("retry after %v, %v; want 2ms", out.RetryAfter, err)
	}
}

func TestDecodeRefuses(t *testing.T) {
	k := testKey()
	req := testRequest(k)
	good, _ := req.Append(nil, k)
	other := NewKey(DeriveKey([]byte("another pair key, 16+")))
	flip := func(i int) []byte { b := bytes.Clone(good); b[i] ^= 1; return b }
	tests := []struct {
		name string
		b    []byte
		k    *Key
		want error
	}{
		{"short", good[:RequestLen-1], k, io.ErrUnexpectedEOF},
		{"long", append(bytes.Clone(good), 0), k, ErrLength},
		{"empty", nil, k, ErrLength},
		{"magic", flip(0), k, ErrMagic},
		{"version", flip(2), k, ErrVersion},
		{"tampered node", flip(9), k, ErrAuth},
		{"tampered auth", flip(RequestLen - 1), k, ErrAuth},
		{"other key", good, other, ErrAuth},
		{"a reply is not a request", mustReply(t, testReply(k), k), k, ErrLength},
	}
	for _, tc := range tests {
		var r Request
		if err := DecodeRequest(tc.b, tc.k, &r); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	// A foreign pair id under a valid authenticator.
	bad := req
	bad.Pair++
	b := mustSeal(t, bad, k)
	var r Request
	if err := DecodeRequest(b, k, &r); !errors.Is(err, ErrPair) {
		t.Errorf("foreign pair: %v", err)
	}
	// Invalid fields under a valid authenticator.
	for i, v := range map[int]byte{3: byte(ReplyGrant), 68: 0, 69: 9, 70: 4, 71: 2} {
		b := bytes.Clone(good)
		b[i] = v
		k.seal(b)
		if err := DecodeRequest(b, k, &r); !errors.Is(err, ErrMalformed) {
			t.Errorf("byte %d = %d: %v, want ErrMalformed", i, v, err)
		}
	}
	rep, _ := testReply(k).Append(nil, k)
	for i, v := range map[int]byte{3: byte(RequestAcquire), 64: byte(reasonMax), 65: 1} {
		b := bytes.Clone(rep)
		b[i] = v
		k.seal(b)
		var out Reply
		if err := DecodeReply(b, k, &out); !errors.Is(err, ErrMalformed) {
			t.Errorf("reply byte %d = %d: %v, want ErrMalformed", i, v, err)
		}
	}
}

func TestAppendRefuses(t *testing.T) {
	k := testKey()
	for name, mut := range map[string]func(*Request){
		"type":     func(r *Request) { r.Type = ReplyGrant },
		"mode":     func(r *Request) { r.Mode = 0 },
		"data":     func(r *Request) { r.Data = 9 },
		"ttl":      func(r *Request) { r.TTL = -1 },
		"pair/key": func(r *Request) { r.Pair++ },
	} {
		r := testRequest(k)
		mut(&r)
		if _, err := r.Append(nil, k); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
	rep := Reply{Type: ReplyGrant, Pair: k.PairID(), Reason: ReasonHeld}
	if _, err := rep.Append(nil, k); !errors.Is(err, ErrInvalid) {
		t.Errorf("grant with a reason: %v", err)
	}
}

func mustReply(t testing.TB, r Reply, k *Key) []byte {
	b, err := r.Append(nil, k)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// mustSeal encodes r whatever its pair id (Append refuses a foreign one).
func mustSeal(t testing.TB, r Request, k *Key) []byte {
	pair := r.Pair
	r.Pair = k.PairID()
	b, err := r.Append(nil, k)
	if err != nil {
		t.Fatal(err)
	}
	b[4], b[5], b[6], b[7] = byte(pair>>24), byte(pair>>16), byte(pair>>8), byte(pair)
	k.seal(b)
	return b
}

var decodeErrors = []error{ErrLength, ErrMagic, ErrVersion, ErrAuth, ErrPair, ErrMalformed}

func known(err error) bool {
	for _, k := range decodeErrors {
		if errors.Is(err, k) {
			return true
		}
	}
	return false
}

// FuzzDecodeRequest: arbitrary datagrams never panic, fail only with the
// documented errors, and an accepted request encodes back to the same bytes.
func FuzzDecodeRequest(f *testing.F) {
	k := testKey()
	good, _ := testRequest(k).Append(nil, k)
	f.Add(good)
	f.Add(good[:20])
	f.Add([]byte("PA"))
	f.Add(mustReply(f, testReply(k), k))
	f.Fuzz(func(t *testing.T, b []byte) {
		RequestPair(b)
		var r Request
		err := DecodeRequest(b, k, &r)
		if err != nil {
			if !known(err) {
				t.Fatalf("undocumented error %v", err)
			}
			return
		}
		out, err := r.Append(nil, k)
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("re-encoding %+v: %x, %v; want %x", r, out, err, b)
		}
	})
}

// FuzzDecodeReply is FuzzDecodeRequest for replies.
func FuzzDecodeReply(f *testing.F) {
	k := testKey()
	f.Add(mustReply(f, testReply(k), k))
	f.Add(mustReply(f, Reply{Type: ReplyGrant, Pair: k.PairID(), TTL: time.Second}, k))
	good, _ := testRequest(k).Append(nil, k)
	f.Add(good)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Reply
		err := DecodeReply(b, k, &r)
		if err != nil {
			if !known(err) {
				t.Fatalf("undocumented error %v", err)
			}
			return
		}
		out, err := r.Append(nil, k)
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("re-encoding %+v: %x, %v; want %x", r, out, err, b)
		}
	})
}

func TestKeyText(t *testing.T) {
	k := DeriveKey(testPairKey)
	got, err := ParseKey(FormatKey(k))
	if err != nil || !bytes.Equal(got, k) {
		t.Fatalf("ParseKey(FormatKey) = %x, %v", got, err)
	}
	for _, bad := range []string{"", "zz", FormatKey(k)[:62], FormatKey(k) + "00"} {
		if _, err := ParseKey(bad); err == nil {
			t.Errorf("ParseKey(%q) accepted", bad)
		}
	}
}

// The names appear in the arbiter's status and in the nodes' logs: every
// one, as other tools expect it.
func TestNamesKept(t *testing.T) {
	var got []string
	for i := range 5 {
		got = append(got, Type(i).String())
	}
	for i := range 3 {
		got = append(got, Mode(i).String())
	}
	for i := range 5 {
		got = append(got, Role(i).String())
	}
	for i := range 4 {
		got = append(got, Data(i).String())
	}
	for i := range reasonMax {
		got = append(got, i.String())
	}
	for i := range 4 {
		got = append(got, EventKind(i).String())
	}
	want := []string{"invalid", "acquire", "release", "grant", "deny",
		"invalid", "main", "spare",
		"invalid", "starting", "primary", "secondary", "fault",
		"invalid", "up-to-date", "outdated", "inconsistent",
		"none", "held", "starting", "preferred", "stale-counter", "released", "unknown-pair", "deciding",
		"invalid", "granted", "denied", "unreachable"}
	if !slices.Equal(got, want) {
		t.Errorf("names\n%q\nwant\n%q", got, want)
	}
}
