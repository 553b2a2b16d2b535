package sdcard

import (
	"bytes"
	"encoding/binary"
	"io"
	"testing"
)

// FuzzWire feeds a byte stream to the receiving side of the mirror
// protocol as a session sees it: frames read with readFrame, each payload
// handed to the decoder of its type. No input may panic or allocate
// beyond the frame limit, and every message a decoder accepts must encode
// back to exactly the payload it came from (no field is dropped or
// invented on the way).
func FuzzWire(f *testing.F) {
	h := helloMsg{Version: ProtocolVersion, NodeID: 7, Size: 1 << 20, BlockSize: 65536, Primary: true,
		Gen: GenInfo{Current: 3, History: []uint64{2, 1}, Data: DataUpToDate}}
	frameOf := func(t msgType, p []byte) []byte {
		b := binary.LittleEndian.AppendUint32(nil, uint32(len(p)+1))
		return append(append(b, byte(t)), p...)
	}
	var stream []byte
	for _, m := range []struct {
		t msgType
		p []byte
	}{
		{msgHello, h.append(nil)},
		{msgRoundStart, encodeRoundStart(roundStartMsg{Round: 9, Mode: RoundBitmap, Source: h})},
		{msgHashes, encodeHashes(hashesMsg{First: 4, Sums: []Sum{{1}, {2}}})},
		{msgFineReq, encodeBlocks([]uint64{1, 5})},
		{msgFineHashes, encodeFine([]fineEntry{{Block: 1, Sums: []Sum{{3}}}})},
		{msgData, dataMsg{Block: 1, Sub: 3, Bytes: []byte("data")}.append(nil)},
		{msgData, dataMsg{Block: 2, Sub: wholeBlock, Zero: true}.append(nil)},
		{msgData, dataMsg{Block: 3, Sub: wholeBlock, Compressed: true, Bytes: []byte("zstd")}.append(nil)},
		{msgRoundEnd, encodeRoundEnd(roundEndMsg{Round: 9, Records: 2})},
		{msgCommitted, binary.LittleEndian.AppendUint64(nil, 9)},
		{msgRoundSize, binary.LittleEndian.AppendUint64(nil, 1<<30)},
		{msgAbort, []byte("reason")},
	} {
		fr := frameOf(m.t, m.p)
		f.Add(fr)
		stream = append(stream, fr...)
	}
	f.Add(stream)
	f.Add(frameOf(msgFineHashes, []byte{1, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff}))
	f.Add([]byte{0xff, 0xff, 0xff, 0x7f, byte(msgData)})

	f.Fuzz(func(t *testing.T, b []byte) {
		c := newFrameConn(struct {
			io.Reader
			io.Writer
		}{bytes.NewReader(b), io.Discard})
		for {
			typ, p, err := c.readFrame(nil)
			if err != nil {
				return
			}
			if len(p) >= maxFrame {
				t.Fatalf("frame of %d bytes beyond the limit", len(p))
			}
			var out []byte
			ok := true
			switch typ {
			case msgHello:
				m, err := decodeHello(p)
				ok, out = err == nil, m.append(nil)
			case msgRoundStart:
				m, err := decodeRoundStart(p)
				ok, out = err == nil, encodeRoundStart(m)
			case msgHashes:
				m, err := decodeHashes(p)
				ok, out = err == nil, encodeHashes(m)
			case msgFineReq:
				m, err := decodeBlocks(p)
				ok, out = err == nil, encodeBlocks(m)
			case msgFineHashes:
				m, err := decodeFine(p)
				ok, out = err == nil, encodeFine(m)
			case msgData:
				m, err := decodeData(p)
				ok, out = err == nil, m.append(nil)
			case msgRoundEnd:
				m, err := decodeRoundEnd(p)
				ok, out = err == nil, encodeRoundEnd(m)
			case msgCommitted, msgRoundSize:
				v, err := decodeU64(typ, p)
				ok, out = err == nil, binary.LittleEndian.AppendUint64(nil, v)
			default:
				continue
			}
			if ok && !bytes.Equal(out, p) {
				t.Fatalf("%v: decoded message encodes to\n% x\nnot its payload\n% x", typ, out, p)
			}
		}
	})
}
