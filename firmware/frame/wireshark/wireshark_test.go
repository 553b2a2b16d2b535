package wireshark

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pairguard/pairguard/firmware/frame"
	"github.com/pairguard/pairguard/firmware/frame/framepcap"
)

const testKey = "pg-wireshark-test-key-0123"

// capture writes payloads as a pcap file and returns its path.
func capture(t *testing.T, payloads ...[]byte) string {
	t.Helper()
	src, _ := net.ParseMAC("02:00:00:00:00:01")
	dst, _ := net.ParseMAC("ff:ff:ff:ff:ff:ff")
	var recs []framepcap.Record
	for i, p := range payloads {
		recs = append(recs, framepcap.Record{Time: time.Unix(1700000000, int64(i)*1e6), Dst: dst, Src: src, Payload: p})
	}
	path := filepath.Join(t.TempDir(), "pg.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := framepcap.WritePcap(f, recs...); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func fields(t *testing.T, pcap, key string, names ...string) [][]string {
	t.Helper()
	rows, err := Fields(context.Background(), pcap, key, names...)
	if errors.Is(err, ErrNoTshark) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

func encode(t *testing.T, f frame.Frame, key *frame.Key) []byte {
	t.Helper()
	b, err := f.AppendBinary(nil, key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDissectorFields(t *testing.T) {
	key := frame.NewKey([]byte(testKey))
	hb := frame.Frame{
		Type: frame.TypeHeartbeat, Flags: frame.FlagPreferred | frame.FlagEligible,
		PairID: key.PairID(), NodeID: 0x0102030405060708, Mode: 2, Role: 2, DataState: 1, MirrorState: 4,
		MirrorPercent: 100, Epoch: 7, BootID: 3, Seq: 42, Generation: 0xabc, History: 0x9, Software: "1.2.3",
	}
	rel := hb
	rel.Type, rel.Flags, rel.Role, rel.Seq = frame.TypeRelease, frame.FlagLAN1|frame.FlagHandover, 3, 43
	pcap := capture(t, encode(t, hb, key), encode(t, rel, key))
	names := []string{"pairguard.version", "pairguard.type", "pairguard.role", "pairguard.epoch", "pairguard.seq",
		"pairguard.boot", "pairguard.node", "pairguard.pair", "pairguard.generation", "pairguard.flags",
		"pairguard.flags.preferred", "pairguard.flags.lan1", "pairguard.mode", "pairguard.data",
		"pairguard.mirror", "pairguard.software", "pairguard.auth.good"}
	rows := fields(t, pcap, testKey, names...)
	pair := fmt.Sprintf("0x%08x", key.PairID())
	want := [][]string{
		{"1", "1", "2", "7", "42", "3", "0x0102030405060708", pair, "0x0000000000000abc", "0x0011", "1", "0", "2", "1", "4", "1.2.3", "1"},
		{"1", "2", "3", "7", "43", "3", "0x0102030405060708", pair, "0x0000000000000abc", "0x0006", "0", "1", "2", "1", "4", "1.2.3", "1"},
	}
	if len(rows) != len(want) {
		t.Fatalf("tshark printed %d packets, want %d: %q", len(rows), len(want), rows)
	}
	for i := range want {
		for j, n := range names {
			if got := rows[i][j]; !strings.EqualFold(got, want[i][j]) {
				t.Errorf("packet %d: %s = %q, want %q", i+1, n, got, want[i][j])
			}
		}
	}
}

// TestDissectorChecks: a wrong length gets an expert note, a tampered frame
// or a wrong key fails the authenticator, an unknown version is shown with
// its prefix, and without a key nothing is verified.
func TestDissectorChecks(t *testing.T) {
	key := frame.NewKey([]byte(testKey))
	good := encode(t, frame.Frame{Type: frame.TypeHeartbeat, PairID: key.PairID(), NodeID: 5, Role: 2, Epoch: 1, Seq: 1}, key)

	truncated := good[:60] // the length field still says 100

	short := append([]byte(nil), good...) // a version 1 frame announcing 90 bytes
	binary.BigEndian.PutUint16(short[4:], 90)

	tampered := append([]byte(nil), good...)
	tampered[35] ^= 1 // the epoch's last byte

	v9 := make([]byte, 40) // another protocol version, 40 bytes long
	copy(v9, "PG")
	v9[2], v9[3] = 9, 1
	binary.BigEndian.PutUint16(v9[4:], 40)

	padded := append(append([]byte(nil), good...), 0, 0, 0, 0)

	pcap := capture(t, good, truncated, short, tampered, v9, padded)
	names := []string{"pairguard.version", "pairguard.epoch", "pairguard.auth.good",
		"pairguard.length.wrong", "pairguard.version.unknown", "pairguard.auth.bad", "pairguard.padding"}
	cases := []struct {
		name                                      string
		epoch, authGood                           string
		wrongLength, unknownVersion, authBad, pad bool
	}{
		{name: "good", epoch: "1", authGood: "1"},
		{name: "truncated", wrongLength: true},
		{name: "length 90", wrongLength: true, authGood: "0", authBad: true, pad: true},
		{name: "tampered", epoch: "0", authGood: "0", authBad: true},
		{name: "version 9", unknownVersion: true, authGood: "0", authBad: true, pad: true}, // Ethernet minimum size,
		{name: "padded", epoch: "1", authGood: "1", pad: true},
	}
	check := func(key string, rows [][]string) {
		t.Helper()
		if len(rows) != len(cases) {
			t.Fatalf("tshark printed %d packets, want %d: %q", len(rows), len(cases), rows)
		}
		for i, c := range cases {
			r := rows[i]
			wantAuth, wantBad := c.authGood, c.authBad
			if key == "" {
				wantAuth, wantBad = "", false
			}
			if r[1] != c.epoch || r[2] != wantAuth || (r[3] != "") != c.wrongLength ||
				(r[4] != "") != c.unknownVersion || (r[5] != "") != wantBad || (r[6] != "") != c.pad {
				t.Errorf("key %q, %s: got %q", key, c.name, r)
			}
		}
	}
	check(testKey, fields(t, pcap, testKey, names...))
	check("", fields(t, pcap, "", names...))
	// The hex form of the same key verifies too; another key fails.
	rows := fields(t, pcap, "hex:"+fmt.Sprintf("%x", testKey), names...)
	if rows[0][2] != "1" {
		t.Errorf("hex key: auth.good = %q, want 1", rows[0][2])
	}
	rows = fields(t, pcap, "pg-another-key-0123456789", names...)
	if rows[0][2] != "0" || rows[0][5] == "" {
		t.Errorf("wrong key: auth.good = %q, auth.bad = %q; want 0 and an expert note", rows[0][2], rows[0][5])
	}
}
