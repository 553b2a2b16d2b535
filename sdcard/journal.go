package sdcard

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"syscall"
)

// JournalFile is the journal's file name inside the state directory.
const JournalFile = "mirror.journal"

// DefaultJournalLimit is how many bytes of records a round may journal
// before the receiver falls back to writing in place (data inconsistent
// until the round completes).
const DefaultJournalLimit = 256 << 20

// Journal byte map (little endian):
//
//	header: magic "PGJRNL01" | round u64 | source size u64 (the round's geometry)
//	record: block u64 | sub u16 | zero u8 | length u32 | bytes | crc32c u32 (of the record so far)
//	commit: block 0xffff…ff | sub 0 | zero 0 | length u32 | payload | crc32c u32
//	        payload: records u64 | chain crc32c u32 (of all record bytes) | generation (hello encoding)
//
// A record that fails its checksum ends the journal; a journal without a
// valid commit is discarded.
const journalMagic = "PGJRNL01"

const commitBlock = ^uint64(0)

// journalBuf is the journal's write and read buffer size.
const journalBuf = 256 << 10

// Journal is the receiver's write-ahead log for one round.
type Journal struct {
	f       File
	w       *bufio.Writer // nil outside a round
	bw      *bufio.Writer // kept across rounds
	hdr     [15]byte
	off     int64 // where the next write goes
	wbFrom  int64 // where the write-back not yet started begins
	chain   uint32
	records uint64
	bytes   int64
	// pending: a commit record was written and the journal not reset
	// since, or unknown (just opened): Begin must not truncate it.
	pending bool
}

// OpenJournal opens (creating) the journal in store. It does not change
// its contents: call Recover first, then Begin for each round.
func OpenJournal(store Store) (*Journal, error) {
	f, err := store.OpenFile(JournalFile)
	if err != nil {
		return nil, fmt.Errorf("sdcard: journal: %w", err)
	}
	return &Journal{f: f, pending: true}, nil
}

// ErrJournalPending is returned by Begin while the journal may hold a
// committed round that has not been applied.
var ErrJournalPending = errors.New("sdcard: journal holds a committed round not yet applied")

// Pending reports whether the journal may hold a committed round that has
// not been applied (and reset) yet.
func (j *Journal) Pending() bool { return j.pending }

// Committed scans the journal and returns the generation of its commit
// record, or nil if it holds no valid commit. It writes nothing.
func (j *Journal) Committed() (*GenInfo, error) {
	if err := j.Flush(); err != nil {
		return nil, err
	}
	_, gen, err := replay(j.f, nil, Geometry{}, false)
	if err == nil && gen == nil {
		j.pending = false
	}
	return gen, err
}

// journalWriteback is how many bytes the journal gathers before it starts
// their write-back: the commit's fsync then waits for at most about this
// much (sequential writes, cheap to submit in small runs).
const journalWriteback = 2 << 20

// Write appends p at the journal's write offset (for the bufio.Writer).
// Every journalWriteback bytes it starts their write-back, so that the
// commit's fsync has little left to write.
func (j *Journal) Write(p []byte) (int, error) {
	n, err := j.f.WriteAt(p, j.off)
	j.off += int64(n)
	if c, ok := j.f.(syscall.Conn); ok && j.off-j.wbFrom >= journalWriteback {
		startWriteback(c, j.wbFrom, j.off-j.wbFrom)
		j.wbFrom = j.off
	}
	return n, err
}

// Close closes the file.
func (j *Journal) Close() error { return j.f.Close() }

// Bytes is the size of the records appended since Begin.
func (j *Journal) Bytes() int64 { return j.bytes }

// Begin empties the journal and starts round over a source of size bytes.
func (j *Journal) Begin(round uint64, size int64) error {
	if j.pending {
		return ErrJournalPending
	}
	if err := j.truncate(); err != nil {
		return err
	}
	if j.bw == nil {
		j.bw = bufio.NewWriterSize(j, journalBuf)
	}
	j.bw.Reset(j)
	j.w = j.bw
	j.chain, j.records, j.bytes = 0, 0, 0
	hdr := binary.LittleEndian.AppendUint64([]byte(journalMagic), round)
	hdr = binary.LittleEndian.AppendUint64(hdr, uint64(size))
	if _, err := j.w.Write(hdr); err != nil {
		return fmt.Errorf("sdcard: journal: %w", err)
	}
	return nil
}

func (j *Journal) truncate() error {
	if err := j.f.Truncate(0); err != nil {
		return fmt.Errorf("sdcard: journal: %w", err)
	}
	j.off, j.wbFrom = 0, 0
	return nil
}

func appendRecord(b []byte, block uint64, sub uint16, zero bool, data []byte) []byte {
	start := len(b)
	b = binary.LittleEndian.AppendUint64(b, block)
	b = binary.LittleEndian.AppendUint16(b, sub)
	b = append(b, boolByte(zero))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(data)))
	b = append(b, data...)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b[start:], crcTable))
}

// Append adds one record. It allocates nothing: the record is written
// to the buffer in pieces and its checksum computed over them.
func (j *Journal) Append(d dataMsg) error {
	h := j.hdr[:]
	binary.LittleEndian.PutUint64(h, d.Block)
	binary.LittleEndian.PutUint16(h[8:], d.Sub)
	h[10] = boolByte(d.Zero)
	binary.LittleEndian.PutUint32(h[11:], uint32(len(d.Bytes)))
	crc := crc32.Update(crc32.Update(0, crcTable, h), crcTable, d.Bytes)
	var tail [4]byte
	binary.LittleEndian.PutUint32(tail[:], crc)
	j.chain = crc32.Update(crc32.Update(crc32.Update(j.chain, crcTable, h), crcTable, d.Bytes), crcTable, tail[:])
	j.records++
	j.bytes += int64(len(h) + len(d.Bytes) + len(tail))
	for _, p := range [][]byte{h, d.Bytes, tail[:]} {
		if _, err := j.w.Write(p); err != nil {
			return fmt.Errorf("sdcard: journal: %w", err)
		}
	}
	return nil
}

// Commit writes the commit record carrying the generation the device
// holds once the records are applied, and makes the journal durable.
func (j *Journal) Commit(gen GenInfo) error {
	p := binary.LittleEndian.AppendUint64(nil, j.records)
	p = binary.LittleEndian.AppendUint32(p, j.chain)
	p = helloMsg{Gen: gen}.append(p)
	if _, err := j.w.Write(appendRecord(nil, commitBlock, 0, false, p)); err != nil {
		return fmt.Errorf("sdcard: journal: %w", err)
	}
	if err := j.w.Flush(); err != nil {
		return fmt.Errorf("sdcard: journal: %w", err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("sdcard: journal fsync: %w", err)
	}
	j.pending = true
	return nil
}

// Flush writes buffered records to the file (without fsync), so that
// Apply can read them back.
func (j *Journal) Flush() error {
	if j.w == nil {
		return nil
	}
	if err := j.w.Flush(); err != nil {
		return fmt.Errorf("sdcard: journal: %w", err)
	}
	return nil
}

// Reset empties the journal durably.
func (j *Journal) Reset() error {
	j.w = nil
	if err := j.truncate(); err != nil {
		return err
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("sdcard: journal fsync: %w", err)
	}
	j.pending = false
	return nil
}

// Apply writes every record in the journal file to dev (committed or not:
// the caller decides) and syncs dev. It returns the number of records and
// the commit's generation, if a valid commit follows them.
func (j *Journal) Apply(dev BlockDevice, g Geometry, requireCommit bool) (applied uint64, gen *GenInfo, err error) {
	if err := j.Flush(); err != nil {
		return 0, nil, err
	}
	return replay(j.f, dev, g, requireCommit)
}

// Recover finishes or discards a round interrupted by a crash: a
// committed journal is replayed onto dev and its generation returned; an
// uncommitted one is dropped. The journal is empty afterwards. The caller
// saves the returned generation in the metadata before anything else.
func (j *Journal) Recover(dev BlockDevice, g Geometry) (*GenInfo, error) {
	_, gen, err := replay(j.f, dev, g, true)
	if err != nil {
		return nil, err
	}
	return gen, nil
}

// replay scans the journal; with requireCommit it writes nothing unless a
// valid commit record is found. With a nil dev it only scans.
func replay(f File, dev BlockDevice, g Geometry, requireCommit bool) (uint64, *GenInfo, error) {
	var gen *GenInfo
	write := func(apply bool) (uint64, error) {
		r := bufio.NewReaderSize(io.NewSectionReader(f, 0, 1<<62), journalBuf)
		hdr := make([]byte, 24)
		if _, err := io.ReadFull(r, hdr); err != nil || string(hdr[:8]) != journalMagic {
			return 0, nil // empty or torn header: nothing to do
		}
		if size := int64(binary.LittleEndian.Uint64(hdr[16:])); dev != nil && size > 0 && size <= dev.Size() {
			g.Size = size
		}
		var chain uint32
		var n uint64
		var buf []byte // grown to the largest record
		for {
			var head [15]byte
			if _, err := io.ReadFull(r, head[:]); err != nil {
				return n, nil
			}
			block := binary.LittleEndian.Uint64(head[:])
			sub := binary.LittleEndian.Uint16(head[8:])
			zero := head[10] != 0
			ln := binary.LittleEndian.Uint32(head[11:])
			if ln > maxFrame {
				return n, nil
			}
			if need := 15 + int(ln) + 4; cap(buf) < need {
				buf = make([]byte, need)
			}
			rec := buf[:15+int(ln)+4]
			copy(rec, head[:])
			if _, err := io.ReadFull(r, rec[15:]); err != nil {
				return n, nil
			}
			body := rec[:15+ln]
			if crc32.Checksum(body, crcTable) != binary.LittleEndian.Uint32(rec[15+ln:]) {
				return n, nil
			}
			if block == commitBlock {
				d := decoder{b: body[15:]}
				cnt, sum := d.u64(), d.u32()
				var h helloMsg
				h.decode(&d)
				if d.done() == nil && cnt == n && sum == chain {
					gen = &h.Gen
				}
				return n, nil
			}
			chain = crc32.Update(chain, crcTable, rec)
			n++
			if apply {
				if err := applyRecord(dev, g, dataMsg{Block: block, Sub: sub, Zero: zero, Bytes: body[15:]}); err != nil {
					return n, err
				}
			}
		}
	}
	n, err := write(!requireCommit && dev != nil)
	if err != nil {
		return n, nil, err
	}
	if requireCommit {
		if gen == nil {
			return 0, nil, nil
		}
		if _, err := write(true); err != nil {
			return n, nil, err
		}
	}
	if n > 0 && dev != nil {
		if err := dev.Sync(); err != nil {
			return n, nil, err
		}
	}
	return n, gen, nil
}

// recordSpan is where a data record lands on the device.
func recordSpan(g Geometry, d dataMsg) (off int64, n int, err error) {
	if d.Block >= g.Blocks() {
		return 0, 0, fmt.Errorf("sdcard: record for block %d beyond %d", d.Block, g.Blocks())
	}
	off, n = g.Span(d.Block)
	if d.Sub != wholeBlock {
		s := int(d.Sub)
		if s*FineSize >= n {
			return 0, 0, fmt.Errorf("sdcard: record for sub-block %d of block %d", s, d.Block)
		}
		off += int64(s * FineSize)
		n = min(FineSize, n-s*FineSize)
	}
	if !d.Zero && len(d.Bytes) != n {
		return 0, 0, fmt.Errorf("sdcard: record of %d bytes for a span of %d", len(d.Bytes), n)
	}
	return off, n, nil
}

func applyRecord(dev io.WriterAt, g Geometry, d dataMsg) error {
	off, n, err := recordSpan(g, d)
	if err != nil {
		return err
	}
	if !d.Zero {
		_, err := dev.WriteAt(d.Bytes, off)
		return err
	}
	return applyZeros(dev, off, n)
}

// applyZeros writes n zero bytes at off.
func applyZeros(dev io.WriterAt, off int64, n int) error {
	for n > 0 {
		k := min(n, len(zeroPage))
		if _, err := dev.WriteAt(zeroPage[:k], off); err != nil {
			return err
		}
		off += int64(k)
		n -= k
	}
	return nil
}

// Records is how many data records the journal holds in the current
// round (the count its commit record carries).
func (j *Journal) Records() uint64 { return j.records }
