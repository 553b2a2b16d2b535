package pairing

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"reflect"
	"testing"
)

func testRecord() Record {
	r := Record{Role: RoleSpare, NodeID: spareID, Settings: testSettings(),
		Peer: Peer{NodeID: mainID, Name: "main-a", Software: "1.4.0", Key: bytes.Repeat([]byte{0xab}, ed25519.PublicKeySize)}}
	for i := range r.PairKey {
		r.PairKey[i] = byte(i)
	}
	return r
}

func TestRecordRoundTrip(t *testing.T) {
	r := testRecord()
	b, err := r.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var got Record
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, r) {
		t.Fatalf("round trip\n got %+v\nwant %+v", got, r)
	}
}

// TestRecordDamage: every flipped bit and every truncation is caught.
func TestRecordDamage(t *testing.T) {
	r := testRecord()
	b, _ := r.MarshalBinary()
	var got Record
	for i := range len(b) * 8 {
		c := bytes.Clone(b)
		c[i/8] ^= 1 << (i % 8)
		if err := got.UnmarshalBinary(c); !errors.Is(err, ErrRecord) {
			t.Fatalf("bit %d flipped: %v", i, err)
		}
	}
	for i := range len(b) {
		if err := got.UnmarshalBinary(b[:i]); !errors.Is(err, ErrRecord) {
			t.Fatalf("truncated to %d: %v", i, err)
		}
	}
}

func TestRecordRefusesIncomplete(t *testing.T) {
	for name, f := range map[string]func(*Record){
		"role":     func(r *Record) { r.Role = roleInvalid },
		"node id":  func(r *Record) { r.NodeID = 0 },
		"peer id":  func(r *Record) { r.Peer.NodeID = 0 },
		"peer key": func(r *Record) { r.Peer.Key = r.Peer.Key[:31] },
	} {
		r := testRecord()
		f(&r)
		if _, err := r.MarshalBinary(); err == nil {
			t.Errorf("%s: encoded", name)
		}
	}
}
