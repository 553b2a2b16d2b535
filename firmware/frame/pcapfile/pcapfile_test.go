package pcapfile

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/pairguard/pairguard/firmware/frame/framepcap"
)

// The file is byte for byte what framepcap (gopacket's pcapgo) writes.
func TestSameAsGopacket(t *testing.T) {
	dst := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	src := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	at := time.Unix(1700000000, 123456789)
	payloads := [][]byte{bytes.Repeat([]byte{0xab}, 120), {1, 2, 3}, nil}
	var mine, theirs bytes.Buffer
	w, err := NewWriter(&mine)
	if err != nil {
		t.Fatal(err)
	}
	var recs []framepcap.Record
	for i, p := range payloads {
		ts := at.Add(time.Duration(i) * 1500 * time.Millisecond)
		if err := w.Write(Record{Time: ts, Dst: dst, Src: src, Payload: p}); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, framepcap.Record{Time: ts, Dst: dst, Src: src, Payload: p})
	}
	if err := framepcap.WritePcap(&theirs, recs...); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mine.Bytes(), theirs.Bytes()) {
		t.Errorf("pcap streams differ:\nmine   %x\ntheirs %x", mine.Bytes(), theirs.Bytes())
	}
	if err := w.Write(Record{Dst: dst[:3], Src: src}); err == nil {
		t.Error("a short MAC was accepted")
	}
}
