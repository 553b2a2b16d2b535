package wireshark

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
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
	if os.Getenv("PAIRGUARD_TEST_EMULATED") == "1" {
		t.Skip("make test-arm: tshark runs on the host either way; the dissector does not depend on the test's architecture")
	}
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

// craft builds a frame of protocol version v (1 or 2) byte by byte, as the
// byte maps of package frame draw them, authenticated under secret.
func craft(v, typ byte, flags uint16, role byte, node, epoch, seq, nonce, echo uint64, software string, secret []byte) []byte {
	n := map[byte]int{1: 100, 2: 116}[v]
	b := make([]byte, n)
	copy(b, "PG")
	b[2], b[3] = v, typ
	binary.BigEndian.PutUint16(b[4:], uint16(n))
	binary.BigEndian.PutUint16(b[6:], flags)
	binary.BigEndian.PutUint32(b[8:], 0x9bcf92b5)
	binary.BigEndian.PutUint64(b[12:], node)
	b[20], b[21], b[22], b[23], b[24], b[25] = 2, role, 1, 4, 100, byte(len(software))
	binary.BigEndian.PutUint64(b[28:], epoch)
	binary.BigEndian.PutUint64(b[36:], 3)
	binary.BigEndian.PutUint64(b[44:], seq)
	binary.BigEndian.PutUint64(b[52:], 0xabc)
	binary.BigEndian.PutUint64(b[60:], 0x9)
	sw := 68
	if v == 2 {
		binary.BigEndian.PutUint64(b[68:], nonce)
		binary.BigEndian.PutUint64(b[76:], echo)
		sw = 84
	}
	copy(b[sw:], software)
	mac := hmac.New(sha256.New, secret)
	mac.Write(b[:n-16])
	copy(b[n-16:], mac.Sum(nil))
	return b
}

// TestDissectorFields decodes frames of protocol versions 1 and 2, and one
// encoded by package frame (its current version), with the pair key set.
func TestDissectorFields(t *testing.T) {
	secret := []byte(testKey)
	key := frame.NewKey(secret)
	v1 := craft(1, 1, 0x0011, 2, 0x0102030405060708, 7, 42, 0, 0, "1.2.3", secret)
	v2 := craft(2, 2, 0x0006, 3, 0x0102030405060708, 7, 43, 0x1111, 0x2222, "2.0.0", secret)
	cur := encode(t, frame.Frame{Type: frame.TypeHeartbeat, Flags: frame.FlagLAN1, PairID: key.PairID(),
		NodeID: 0x42, Role: 2, Epoch: 9, BootID: 4, Seq: 44, Software: "cur"}, key)
	pcap := capture(t, v1, v2, cur)
	names := []string{"pairguard.version", "pairguard.type", "pairguard.role", "pairguard.epoch", "pairguard.seq",
		"pairguard.boot", "pairguard.node", "pairguard.pair", "pairguard.generation", "pairguard.flags",
		"pairguard.flags.preferred", "pairguard.flags.lan1", "pairguard.mode", "pairguard.data",
		"pairguard.mirror", "pairguard.software", "pairguard.nonce", "pairguard.echo",
		"pairguard.auth.good", "pairguard.length.wrong"}
	rows := fields(t, pcap, testKey, names...)
	want := [][]string{
		{"1", "1", "2", "7", "42", "3", "0x0102030405060708", "0x9bcf92b5", "0x0000000000000abc", "0x0011", "1", "0", "2", "1", "4", "1.2.3", "", "", "1", ""},
		{"2", "2", "3", "7", "43", "3", "0x0102030405060708", "0x9bcf92b5", "0x0000000000000abc", "0x0006", "0", "1", "2", "1", "4", "2.0.0", "0x0000000000001111", "0x0000000000002222", "1", ""},
	}
	if len(rows) != 3 {
		t.Fatalf("tshark printed %d packets, want 3: %q", len(rows), rows)
	}
	for i := range want {
		for j, n := range names {
			if got := rows[i][j]; !strings.EqualFold(got, want[i][j]) {
				t.Errorf("version %d frame: %s = %q, want %q", i+1, n, got, want[i][j])
			}
		}
	}
	cw := map[string]string{"pairguard.version": fmt.Sprint(frame.ProtocolVersion), "pairguard.type": "1",
		"pairguard.role": "2", "pairguard.epoch": "9", "pairguard.seq": "44", "pairguard.boot": "4",
		"pairguard.node": "0x0000000000000042", "pairguard.pair": fmt.Sprintf("0x%08x", key.PairID()),
		"pairguard.flags.lan1": "1", "pairguard.software": "cur", "pairguard.auth.good": "1", "pairguard.length.wrong": ""}
	for j, n := range names {
		if w, ok := cw[n]; ok && !strings.EqualFold(rows[2][j], w) {
			t.Errorf("frame of package frame (version %d): %s = %q, want %q", frame.ProtocolVersion, n, rows[2][j], w)
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

// TestDissectorSettings decodes the parts of a node's settings (type 4):
// their placement, the part's own bytes, and the authenticator.
func TestDissectorSettings(t *testing.T) {
	key := frame.NewKey([]byte(testKey))
	settings := []byte(strings.Repeat("heartbeat.interval=20ms;", 4)) // 96 bytes: parts of 44, 44, 8
	parts, err := frame.SettingsParts(settings, frame.SettingsPart{PairID: key.PairID(), NodeID: 0x42, BootID: 3})
	if err != nil {
		t.Fatal(err)
	}
	var payloads [][]byte
	for i := range parts {
		parts[i].Seq = uint64(50 + i)
		b, err := parts[i].AppendBinary(nil, key)
		if err != nil {
			t.Fatal(err)
		}
		payloads = append(payloads, b)
	}
	names := []string{"pairguard.type", "pairguard.node", "pairguard.boot", "pairguard.seq",
		"pairguard.settings.total", "pairguard.settings.index", "pairguard.settings.count",
		"pairguard.settings.part", "pairguard.auth.good", "pairguard.length.wrong", "pairguard.epoch"}
	rows := fields(t, capture(t, payloads...), testKey, names...)
	if len(rows) != 3 {
		t.Fatalf("tshark printed %d packets, want 3: %q", len(rows), rows)
	}
	for i, r := range rows {
		part := fmt.Sprintf("%x", parts[i].Data)
		want := []string{"4", "0x0000000000000042", "3", fmt.Sprint(50 + i), "96", fmt.Sprint(i), "3", part, "1", "", ""}
		for j, n := range names {
			got := strings.ReplaceAll(r[j], ":", "") // bytes print as hex, with or without colons
			if !strings.EqualFold(got, want[j]) {
				t.Errorf("part %d: %s = %q, want %q", i, n, r[j], want[j])
			}
		}
	}
}
