package online

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/pairguard/pairguard/sdcard"
)

// The replication stream, primary to secondary, after TLS:
//
//	secondary                        primary
//	Hello{gen info}          ──▶
//	                         ◀──     Start{gen info, resync flag}  (or close: split brain, peer newer)
//	                         ◀──     Write / Zero / Flush / Done / Verify / Resync, numbered 1, 2, 3…
//	Ack{seq}…                ──▶     (in order: the secondary applies one at a time)
//
// A Write or Zero is acknowledged once applied to the secondary's device,
// a Flush once the secondary's device is synced (after everything before
// it), a Done (end of a resync) once the secondary persisted the
// primary's generation as its own, up to date. A Verify (offset, length:
// a range of whole 64 KiB verify blocks, the last one possibly short at
// the device's end) is answered by an Ack whose payload is the SHA-256 of
// each block, read after everything before it was applied. A Resync (an
// async primary fell behind: some writes were only marked dirty) makes
// the secondary inconsistent again until the next Done.
//
// Byte map of a frame header (little endian), then length bytes of payload
// for Hello, Start, Write and an Ack of a Verify:
//
//	0  type u8 | flags u8 | zero u16
//	4  length u32 (payload bytes; the range for Zero)
//	8  seq u64
//	16 offset u64
const headerLen = 24

type msgType uint8

const (
	msgInvalid msgType = iota
	msgHello
	msgStart
	msgWrite
	msgZero
	msgFlush
	msgDone
	msgAck
	msgVerify
	msgResync
)

const flagResync = 1

// maxPayload bounds a frame's payload; a longer length is not trusted.
const maxPayload = 32 << 20

// ErrProtocol is a malformed frame from the peer.
var ErrProtocol = errors.New("online: protocol error")

type header struct {
	typ    msgType
	flags  uint8
	length uint32
	seq    uint64
	off    uint64
}

func (h header) append(b []byte) []byte {
	le := binary.LittleEndian
	b = append(b, byte(h.typ), h.flags, 0, 0)
	b = le.AppendUint32(b, h.length)
	b = le.AppendUint64(b, h.seq)
	return le.AppendUint64(b, h.off)
}

func readHeader(r io.Reader, buf []byte) (header, error) {
	if _, err := io.ReadFull(r, buf[:headerLen]); err != nil {
		return header{}, err
	}
	le := binary.LittleEndian
	h := header{typ: msgType(buf[0]), flags: buf[1], length: le.Uint32(buf[4:]), seq: le.Uint64(buf[8:]), off: le.Uint64(buf[16:])}
	if h.typ == msgInvalid || h.typ > msgResync || buf[2] != 0 || buf[3] != 0 {
		return header{}, fmt.Errorf("%w: frame type %d", ErrProtocol, buf[0])
	}
	if h.typ != msgZero && h.typ != msgVerify && h.length > maxPayload {
		return header{}, fmt.Errorf("%w: payload of %d bytes", ErrProtocol, h.length)
	}
	return h, nil
}

// Byte map of a GenInfo payload: current u64 | data u8 | count u8 |
// count×u64 history (newest first).
func appendGen(b []byte, g sdcard.GenInfo) []byte {
	le := binary.LittleEndian
	b = le.AppendUint64(b, g.Current)
	n := min(len(g.History), sdcard.MaxHistory)
	b = append(b, byte(g.Data), byte(n))
	for _, h := range g.History[:n] {
		b = le.AppendUint64(b, h)
	}
	return b
}

func decodeGen(b []byte) (sdcard.GenInfo, error) {
	if len(b) < 10 {
		return sdcard.GenInfo{}, fmt.Errorf("%w: %w", ErrProtocol, io.ErrUnexpectedEOF)
	}
	le := binary.LittleEndian
	g := sdcard.GenInfo{Current: le.Uint64(b), Data: sdcard.DataState(b[8])}
	n := int(b[9])
	if n > sdcard.MaxHistory || len(b) != 10+8*n || !g.Data.Valid() {
		return sdcard.GenInfo{}, fmt.Errorf("%w: generation info", ErrProtocol)
	}
	for i := range n {
		g.History = append(g.History, le.Uint64(b[10+8*i:]))
	}
	return g, nil
}

func writeFrame(w io.Writer, h header, payload []byte) error {
	h.length = uint32(len(payload))
	b := h.append(make([]byte, 0, headerLen+len(payload)))
	_, err := w.Write(append(b, payload...))
	return err
}

func readPayload(r io.Reader, h header) ([]byte, error) {
	b := make([]byte, h.length)
	_, err := io.ReadFull(r, b)
	return b, err
}
