package sdcard

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"reflect"
	"testing"
)

func TestWireRoundTrip(t *testing.T) {
	h := helloMsg{Version: 1, NodeID: 2, Size: 3, BlockSize: 65536, Hash: HashBLAKE3, Primary: true,
		Gen: GenInfo{Current: 9, History: []uint64{8, 7}, Data: DataOutdated}}
	if got, err := decodeHello(h.append(nil)); err != nil || !reflect.DeepEqual(got, h) {
		t.Fatalf("hello %+v, %v", got, err)
	}
	rs := roundStartMsg{Round: 5, Mode: RoundBitmap, Source: h}
	if got, err := decodeRoundStart(encodeRoundStart(rs)); err != nil || !reflect.DeepEqual(got, rs) {
		t.Fatalf("round start %+v, %v", got, err)
	}
	hs := hashesMsg{First: 4, Sums: []Sum{{1}, {2, 3}}}
	if got, err := decodeHashes(encodeHashes(hs)); err != nil || !reflect.DeepEqual(got, hs) {
		t.Fatalf("hashes %+v, %v", got, err)
	}
	fe := []fineEntry{{Block: 1, Sums: []Sum{{4}}}, {Block: 9, Sums: []Sum{{5}, {6}}}}
	if got, err := decodeFine(encodeFine(fe)); err != nil || !reflect.DeepEqual(got, fe) {
		t.Fatalf("fine %+v, %v", got, err)
	}
	d := dataMsg{Block: 3, Sub: 2, Bytes: []byte("abc")}
	if got, err := decodeData(d.append(nil)); err != nil || !reflect.DeepEqual(got, d) {
		t.Fatalf("data %+v, %v", got, err)
	}
	if _, err := decodeData(dataMsg{Zero: true, Bytes: []byte{1}}.append(nil)); err == nil {
		t.Fatal("zero marker with bytes accepted")
	}
}

func FuzzDecode(f *testing.F) {
	h := helloMsg{Version: 1, Gen: GenInfo{Current: 1, History: []uint64{2}, Data: DataUpToDate}}
	f.Add(h.append(nil))
	f.Add(encodeRoundStart(roundStartMsg{Round: 1, Mode: RoundChecksum, Source: h}))
	f.Add(encodeFine([]fineEntry{{Block: 1, Sums: []Sum{{1}}}}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		if m, err := decodeHello(b); err == nil {
			if !bytes.Equal(m.append(nil), b) {
				t.Fatal("hello does not re-encode to its input")
			}
		}
		decodeRoundStart(b)
		decodeHashes(b)
		decodeBlocks(b)
		if es, err := decodeFine(b); err == nil && !bytes.Equal(encodeFine(es), b) {
			t.Fatal("fine hashes do not re-encode to their input")
		}
		decodeData(b)
		decodeRoundEnd(b)
	})
}

func FuzzFrame(f *testing.F) {
	f.Add([]byte{2, 0, 0, 0, 1, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		c := newFrameConn(struct {
			io.Reader
			io.Writer
		}{bytes.NewReader(b), io.Discard})
		for {
			if _, _, err := c.readFrame(nil); err != nil {
				return
			}
		}
	})
}

func TestTLSPinsPairKey(t *testing.T) {
	good, _ := TLSConfig(testKey)
	other, _ := TLSConfig([]byte("another pair's key, 32 bytes...."))
	handshake := func(server, client *tls.Config) (error, error) { return tlsHandshake(t, server, client) }
	if s, c := handshake(good, good); s != nil || c != nil {
		t.Fatalf("same key: server %v, client %v", s, c)
	}
	if s, _ := handshake(good, other); s == nil {
		t.Fatal("server accepted a client of another pair")
	}
	if _, c := handshake(other, good); !errors.Is(c, ErrWrongPeer) {
		t.Fatalf("client accepted a server of another pair: %v", c)
	}
	if _, err := TLSConfig([]byte("short")); err == nil {
		t.Fatal("short key accepted")
	}
}
