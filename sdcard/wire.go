package sdcard

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
)

// ProtocolVersion is the mirror protocol's version, sent in Hello.
const ProtocolVersion = 1

// Frames on the connection (little endian):
//
//	0 payload length u32 (type byte included) | 4 type u8 | 5 payload
//
// The length is checked against maxFrame before anything is allocated.
const maxFrame = 2 << 20

type msgType uint8

const (
	msgInvalid    msgType = iota
	msgHello              // helloMsg, first frame each way, then on every change
	msgRoundStart         // roundStartMsg, source → target
	msgHashes             // hashesMsg, coarse sums, target → source (also verify)
	msgHashesEnd          // no payload
	msgFineReq            // fineReqMsg, source → target
	msgFineHashes         // fineHashesMsg, target → source
	msgData               // dataMsg, source → target
	msgRoundEnd           // roundEndMsg, source → target
	msgCommitted          // u64 round, target → source
	msgBusy               // reason string: a request is refused
	msgVerifyReq          // no payload: send all coarse sums
	msgDiscard            // no payload: the receiver must discard its generation (split brain resolved)
	msgAbort              // reason string: the round is abandoned
	msgSyncReq            // no payload: a secondary asks the primary for a round
	msgRoundSize          // u64: bytes the round will certainly write, source → target
	msgBlockSum           // blockSumMsg: a block's sum once its sub-block records are in, source → target (alpnSums only)
)

var msgNames = [...]string{"invalid", "hello", "round-start", "hashes", "hashes-end", "fine-req",
	"fine-hashes", "data", "round-end", "committed", "busy", "verify-req", "discard", "abort", "sync-req", "round-size", "block-sum"}

func (t msgType) String() string {
	if int(t) < len(msgNames) {
		return msgNames[t]
	}
	return fmt.Sprintf("invalid(%d)", uint8(t))
}

// helloMsg byte map:
//
//	0 version u16 | 2 node id u64 | 10 size u64 | 18 block size u32 | 22 hash u8
//	23 primary u8 | 24 data u8 | 25 current u64 | 33 history count u8 | 34 history×u64
type helloMsg struct {
	Version   uint16
	NodeID    uint64
	Size      uint64
	BlockSize uint32
	Hash      HashKind
	Primary   bool
	Gen       GenInfo
}

func (m helloMsg) append(b []byte) []byte {
	le := binary.LittleEndian
	b = le.AppendUint16(b, m.Version)
	b = le.AppendUint64(b, m.NodeID)
	b = le.AppendUint64(b, m.Size)
	b = le.AppendUint32(b, m.BlockSize)
	b = append(b, byte(m.Hash), boolByte(m.Primary), byte(m.Gen.Data))
	b = le.AppendUint64(b, m.Gen.Current)
	h := m.Gen.History[:min(len(m.Gen.History), MaxHistory)]
	b = append(b, byte(len(h)))
	for _, x := range h {
		b = le.AppendUint64(b, x)
	}
	return b
}

func (m *helloMsg) decode(r *decoder) {
	m.Version = r.u16()
	m.NodeID = r.u64()
	m.Size = r.u64()
	m.BlockSize = r.u32()
	m.Hash = HashKind(r.u8())
	switch r.u8() {
	case 0:
	case 1:
		m.Primary = true
	default:
		r.fail(errors.New("invalid primary flag"))
	}
	m.Gen.Data = DataState(r.u8())
	m.Gen.Current = r.u64()
	n := int(r.u8())
	if n > MaxHistory {
		r.fail(errors.New("history too long"))
		return
	}
	m.Gen.History = nil
	for range n {
		m.Gen.History = append(m.Gen.History, r.u64())
	}
	if r.err == nil && !m.Gen.Data.Valid() {
		r.fail(errors.New("invalid data state"))
	}
}

// RoundMode says how a round finds the differing blocks.
type RoundMode uint8

const (
	roundModeInvalid RoundMode = iota // invalid
	// RoundChecksum: the target sends the sums of all blocks.
	RoundChecksum // checksum
	// RoundBitmap: the source's dirty bitmap lists the blocks.
	RoundBitmap // bitmap
)

// roundStartMsg byte map: 0 round u64 | 8 mode u8 | 9 source hello (its generation to adopt)
type roundStartMsg struct {
	Round  uint64
	Mode   RoundMode
	Source helloMsg
}

// hashesMsg byte map: 0 first block u64 | 8 sums×16 (count from the length)
type hashesMsg struct {
	First uint64
	Sums  []Sum
}

// fineHashesMsg byte map: repeated { block u64 | count u16 | count×16 sums }
type fineEntry struct {
	Block uint64
	Sums  []Sum
}

// dataMsg byte map: 0 block u64 | 8 sub u16 (wholeBlock = all) | 10 kind u8 | 11 bytes
//
// Kinds: 0 data, 1 zero marker (no bytes), 2 data compressed with zstd
// (only to a peer that negotiated alpnCompressed).
type dataMsg struct {
	Block      uint64
	Sub        uint16
	Zero       bool
	Compressed bool
	Bytes      []byte
}

func (m dataMsg) kind() byte {
	switch {
	case m.Zero:
		return 1
	case m.Compressed:
		return 2
	}
	return 0
}

const wholeBlock = 0xffff

// blockSumMsg byte map: 0 block u64 | 8 sum 16 bytes
//
// The source sends it after the sub-block records of a block: the sum of
// the whole block as the source read it, which the target's block is
// once those records are applied (the sub-blocks not sent have the fine
// sums the target reported).
type blockSumMsg struct {
	Block uint64
	Sum   Sum
}

func encodeBlockSum(m blockSumMsg) []byte {
	return append(binary.LittleEndian.AppendUint64(nil, m.Block), m.Sum[:]...)
}

func decodeBlockSum(p []byte) (blockSumMsg, error) {
	r := decoder{b: p}
	m := blockSumMsg{Block: r.u64(), Sum: r.sum()}
	return m, wrapDecode(msgBlockSum, r.done())
}

// roundEndMsg byte map: 0 round u64 | 8 records u64
type roundEndMsg struct {
	Round   uint64
	Records uint64
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// decoder reads fixed fields, remembering the first short read.
type decoder struct {
	b   []byte
	err error
}

func (r *decoder) fail(err error) {
	if r.err == nil {
		r.err = err
	}
	r.b = nil
}

func (r *decoder) take(n int) []byte {
	if r.err != nil || len(r.b) < n {
		r.fail(io.ErrUnexpectedEOF)
		return make([]byte, n)
	}
	p := r.b[:n]
	r.b = r.b[n:]
	return p
}

func (r *decoder) u8() uint8   { return r.take(1)[0] }
func (r *decoder) u16() uint16 { return binary.LittleEndian.Uint16(r.take(2)) }
func (r *decoder) u32() uint32 { return binary.LittleEndian.Uint32(r.take(4)) }
func (r *decoder) u64() uint64 { return binary.LittleEndian.Uint64(r.take(8)) }
func (r *decoder) sum() (s Sum) {
	copy(s[:], r.take(16))
	return s
}

func (r *decoder) done() error {
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%d trailing bytes", len(r.b))
	}
	return r.err
}

func decodeHello(p []byte) (helloMsg, error) {
	var m helloMsg
	r := decoder{b: p}
	m.decode(&r)
	return m, wrapDecode(msgHello, r.done())
}

func encodeRoundStart(m roundStartMsg) []byte {
	b := binary.LittleEndian.AppendUint64(nil, m.Round)
	b = append(b, byte(m.Mode))
	return m.Source.append(b)
}

func decodeRoundStart(p []byte) (roundStartMsg, error) {
	var m roundStartMsg
	r := decoder{b: p}
	m.Round = r.u64()
	m.Mode = RoundMode(r.u8())
	m.Source.decode(&r)
	if r.err == nil && m.Mode != RoundChecksum && m.Mode != RoundBitmap {
		r.fail(errors.New("invalid mode"))
	}
	return m, wrapDecode(msgRoundStart, r.done())
}

func encodeHashes(m hashesMsg) []byte {
	b := make([]byte, 8, 8+16*len(m.Sums))
	binary.LittleEndian.PutUint64(b, m.First)
	for _, s := range m.Sums {
		b = append(b, s[:]...)
	}
	return b
}

func decodeHashes(p []byte) (hashesMsg, error) {
	var m hashesMsg
	r := decoder{b: p}
	m.First = r.u64()
	if r.err == nil && len(r.b)%16 != 0 {
		r.fail(errors.New("partial sum"))
	}
	if r.err == nil {
		m.Sums = make([]Sum, len(r.b)/16)
		for i := range m.Sums {
			m.Sums[i] = r.sum()
		}
	}
	return m, wrapDecode(msgHashes, r.done())
}

func encodeBlocks(blocks []uint64) []byte {
	b := make([]byte, 0, 8*len(blocks))
	for _, x := range blocks {
		b = binary.LittleEndian.AppendUint64(b, x)
	}
	return b
}

func decodeBlocks(p []byte) ([]uint64, error) {
	if len(p)%8 != 0 {
		return nil, wrapDecode(msgFineReq, errors.New("partial index"))
	}
	out := make([]uint64, len(p)/8)
	for i := range out {
		out[i] = binary.LittleEndian.Uint64(p[8*i:])
	}
	return out, nil
}

func encodeFine(es []fineEntry) []byte {
	var b []byte
	for _, e := range es {
		b = binary.LittleEndian.AppendUint64(b, e.Block)
		b = binary.LittleEndian.AppendUint16(b, uint16(len(e.Sums)))
		for _, s := range e.Sums {
			b = append(b, s[:]...)
		}
	}
	return b
}

func decodeFine(p []byte) ([]fineEntry, error) {
	var out []fineEntry
	r := decoder{b: p}
	for r.err == nil && len(r.b) > 0 {
		e := fineEntry{Block: r.u64()}
		n := int(r.u16())
		if r.err == nil && len(r.b) < 16*n {
			r.fail(io.ErrUnexpectedEOF)
			break
		}
		e.Sums = make([]Sum, n)
		for i := range e.Sums {
			e.Sums[i] = r.sum()
		}
		out = append(out, e)
	}
	return out, wrapDecode(msgFineHashes, r.done())
}

func (m dataMsg) append(b []byte) []byte {
	b = binary.LittleEndian.AppendUint64(b, m.Block)
	b = binary.LittleEndian.AppendUint16(b, m.Sub)
	b = append(b, m.kind())
	return append(b, m.Bytes...)
}

func decodeData(p []byte) (dataMsg, error) {
	var m dataMsg
	r := decoder{b: p}
	m.Block = r.u64()
	m.Sub = r.u16()
	switch r.u8() {
	case 0:
	case 1:
		m.Zero = true
	case 2:
		m.Compressed = true
	default:
		r.fail(errors.New("invalid kind"))
	}
	if r.err == nil {
		m.Bytes = r.b
		r.b = nil
	}
	if r.err == nil && m.Zero && len(m.Bytes) != 0 {
		r.fail(errors.New("zero marker with bytes"))
	}
	if r.err == nil && m.Compressed && len(m.Bytes) == 0 {
		r.fail(errors.New("compressed record without bytes"))
	}
	return m, wrapDecode(msgData, r.done())
}

func encodeRoundEnd(m roundEndMsg) []byte {
	b := binary.LittleEndian.AppendUint64(nil, m.Round)
	return binary.LittleEndian.AppendUint64(b, m.Records)
}

func decodeRoundEnd(p []byte) (roundEndMsg, error) {
	r := decoder{b: p}
	m := roundEndMsg{Round: r.u64(), Records: r.u64()}
	return m, wrapDecode(msgRoundEnd, r.done())
}

func decodeU64(t msgType, p []byte) (uint64, error) {
	r := decoder{b: p}
	v := r.u64()
	return v, wrapDecode(t, r.done())
}

func wrapDecode(t msgType, err error) error {
	if err != nil {
		return fmt.Errorf("sdcard: decode %v: %w", t, err)
	}
	return nil
}

// frameConn reads and writes frames over a buffered stream and counts
// the bytes on the wire.
type frameConn struct {
	r       *bufio.Reader
	w       *bufio.Writer
	whdr    [5 + dataHeader]byte
	rhdr    [5]byte
	written atomic.Uint64
	read    atomic.Uint64
}

// frameConn buffer sizes: the writer gathers frames into large TLS writes
// (full 16 KiB records); the reader only needs to hold headers, payloads
// larger than it are read straight into their buffers.
const (
	frameWriteBuf = 128 << 10
	frameReadBuf  = 32 << 10
)

func newFrameConn(rw io.ReadWriter) *frameConn {
	return &frameConn{r: bufio.NewReaderSize(rw, frameReadBuf), w: bufio.NewWriterSize(rw, frameWriteBuf)}
}

// write queues one frame; flush sends.
func (c *frameConn) write(t msgType, payload []byte) error {
	return c.writeParts(t, nil, payload)
}

// writeParts queues one frame whose payload is head then body, without
// joining them first.
func (c *frameConn) writeParts(t msgType, head, body []byte) error {
	n := len(head) + len(body)
	binary.LittleEndian.PutUint32(c.whdr[:4], uint32(n+1))
	c.whdr[4] = byte(t)
	h := append(c.whdr[:5], head...)
	if _, err := c.w.Write(h); err != nil {
		return fmt.Errorf("sdcard: send %v: %w", t, err)
	}
	if _, err := c.w.Write(body); err != nil {
		return fmt.Errorf("sdcard: send %v: %w", t, err)
	}
	c.written.Add(uint64(n + 5))
	return nil
}

// dataHeader is the size of a dataMsg before its bytes.
const dataHeader = 11

// writeData queues a data record without copying its bytes into a message.
func (c *frameConn) writeData(d dataMsg) error {
	var h [dataHeader]byte
	binary.LittleEndian.PutUint64(h[:], d.Block)
	binary.LittleEndian.PutUint16(h[8:], d.Sub)
	h[10] = d.kind()
	return c.writeParts(msgData, h[:], d.Bytes)
}

func (c *frameConn) flush() error {
	if err := c.w.Flush(); err != nil {
		return fmt.Errorf("sdcard: send: %w", err)
	}
	return nil
}

// readFrame returns the next frame, its payload in a buffer from pool
// (or a fresh one when pool is nil).
func (c *frameConn) readFrame(pool *bufPool) (msgType, []byte, error) {
	if _, err := io.ReadFull(c.r, c.rhdr[:]); err != nil {
		return 0, nil, fmt.Errorf("sdcard: receive: %w", err)
	}
	n := binary.LittleEndian.Uint32(c.rhdr[:4])
	if n < 1 || n > maxFrame {
		return 0, nil, fmt.Errorf("sdcard: receive: frame length %d", n)
	}
	p := pool.get(int(n - 1))
	if _, err := io.ReadFull(c.r, p); err != nil {
		pool.put(p)
		return 0, nil, fmt.Errorf("sdcard: receive: %w", err)
	}
	c.read.Add(uint64(n) + 4)
	return msgType(c.rhdr[4]), p, nil
}

// bufPool recycles frame buffers of one size (a data record of a whole
// block fits), so that a round's stream of records does not allocate one
// buffer per frame. It holds at most cap(free) buffers; a frame larger
// than size gets a buffer of its own.
type bufPool struct {
	size int
	free chan []byte
}

func newBufPool(size, keep int) *bufPool {
	return &bufPool{size: size, free: make(chan []byte, keep)}
}

func (bp *bufPool) get(n int) []byte {
	if bp == nil || n > bp.size {
		return make([]byte, n)
	}
	select {
	case b := <-bp.free:
		return b[:n]
	default:
		return make([]byte, n, bp.size)
	}
}

// put returns b; a buffer not of the pool's size is left to the collector.
func (bp *bufPool) put(b []byte) {
	if bp == nil || cap(b) != bp.size {
		return
	}
	select {
	case bp.free <- b[:0]:
	default:
	}
}
