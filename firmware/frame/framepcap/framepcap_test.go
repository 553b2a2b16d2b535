package framepcap

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/pairguard/pairguard/firmware/frame"
)

var (
	macA = net.HardwareAddr{0x02, 0, 0, 0, 0, 0xa}
	macB = net.HardwareAddr{0x02, 0, 0, 0, 0, 0xb}
)

func testRecords(t *testing.T) ([]Record, []frame.Frame) {
	t.Helper()
	key := frame.NewKey([]byte("secret"))
	base := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	var recs []Record
	var frames []frame.Frame
	for i, typ := range []frame.Type{frame.TypePairHello, frame.TypeHeartbeat, frame.TypeRelease} {
		f := frame.Frame{
			Type: typ, Flags: frame.FlagPreferred, PairID: key.PairID(), NodeID: 11,
			Mode: 2, Role: 2, DataState: 1, MirrorState: 4, MirrorPercent: 100,
			Epoch: 3, BootID: 9, Seq: uint64(i + 1), Generation: 77, History: 76, Nonce: 0xabc, Echo: 0xdef, Software: "0.1.0",
		}
		b, err := f.AppendBinary(nil, key)
		if err != nil {
			t.Fatal(err)
		}
		f.Version = frame.ProtocolVersion
		frames = append(frames, f)
		recs = append(recs, Record{Time: base.Add(time.Duration(i) * time.Second), Dst: layers.EthernetBroadcast, Src: macA, Payload: b})
	}
	// A frame of a future protocol version, and one with padding.
	v3 := frame.Frame{Version: 3, Type: frame.TypeHeartbeat}
	b, _ := v3.AppendBinary(nil, key)
	recs = append(recs, Record{Time: base.Add(10 * time.Second), Dst: macA, Src: macB, Payload: b})
	frames = append(frames, frame.Frame{Version: 3, Type: frame.TypeHeartbeat})
	padded := append(bytes.Clone(recs[1].Payload), make([]byte, 30)...)
	recs = append(recs, Record{Time: base.Add(11 * time.Second), Dst: macA, Src: macB, Payload: padded})
	frames = append(frames, frames[1])
	return recs, frames
}

func TestPcapRoundTrip(t *testing.T) {
	recs, frames := testRecords(t)
	var buf bytes.Buffer
	if err := WritePcap(&buf, recs...); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "pairguard.pcap")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	r, err := pcapgo.NewReader(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if r.LinkType() != layers.LinkTypeEthernet {
		t.Fatalf("link type %v", r.LinkType())
	}
	for i := 0; ; i++ {
		data, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			if i != len(recs) {
				t.Fatalf("read %d packets, wrote %d", i, len(recs))
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !ci.Timestamp.Equal(recs[i].Time) {
			t.Errorf("packet %d: time %v, want %v", i, ci.Timestamp, recs[i].Time)
		}
		pkt := gopacket.NewPacket(data, layers.LinkTypeEthernet, gopacket.Default)
		if el := pkt.ErrorLayer(); el != nil {
			t.Fatalf("packet %d: %v", i, el.Error())
		}
		eth := pkt.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
		if eth.EthernetType.String() != "Pairguard" || !bytes.Equal(eth.SrcMAC, recs[i].Src) {
			t.Errorf("packet %d: ethernet %v from %v", i, eth.EthernetType, eth.SrcMAC)
		}
		l, ok := pkt.Layer(LayerTypePairguard).(*Layer)
		if !ok {
			t.Fatalf("packet %d: no Pairguard layer in %v", i, pkt)
		}
		if l.Frame != frames[i] {
			t.Errorf("packet %d:\n got %+v\nwant %+v", i, l.Frame, frames[i])
		}
		n := len(recs[i].Payload)
		if i == 4 {
			n -= 30
		}
		if int(l.Length) != n || !bytes.Equal(l.Auth[:], recs[i].Payload[n-frame.AuthLen:n]) {
			t.Errorf("packet %d: length %d auth % x", i, l.Length, l.Auth)
		}
	}

	// If a capture tool is installed, it must read the file too.
	for _, tool := range [][]string{{"tshark", "-r", path}, {"tcpdump", "-nr", path}} {
		if _, err := exec.LookPath(tool[0]); err != nil {
			t.Logf("%s not installed, not checked", tool[0])
			continue
		}
		out, err := exec.Command(tool[0], tool[1:]...).CombinedOutput()
		if err != nil {
			t.Errorf("%s: %v\n%s", tool[0], err, out)
		}
		t.Logf("%s:\n%s", tool[0], out)
	}
}

func TestDecodingLayerParser(t *testing.T) {
	recs, frames := testRecords(t)
	var eth layers.Ethernet
	var pg Layer
	parser := gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet, &eth, &pg)
	var decoded []gopacket.LayerType
	var buf bytes.Buffer
	w, err := NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(recs[1]); err != nil {
		t.Fatal(err)
	}
	r, _ := pcapgo.NewReader(&buf)
	data, _, err := r.ReadPacketData()
	if err != nil {
		t.Fatal(err)
	}
	if err := parser.DecodeLayers(data, &decoded); err != nil {
		t.Fatal(err)
	}
	if len(decoded) != 2 || decoded[1] != LayerTypePairguard || pg.Frame != frames[1] {
		t.Fatalf("decoded %v, frame %+v", decoded, pg.Frame)
	}
}

func TestLayerRejectsGarbage(t *testing.T) {
	var l Layer
	for _, b := range [][]byte{nil, []byte("PG\x01"), []byte("XX\x01\x01\x00\x64")} {
		if err := l.DecodeFromBytes(b, gopacket.NilDecodeFeedback); err == nil {
			t.Errorf("DecodeFromBytes(% x) accepted", b)
		}
	}
}
