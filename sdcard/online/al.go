package online

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"slices"

	"github.com/pairguard/pairguard/sdcard"
)

// Files in the state directory.
const (
	// ALFile is the activity log: a ring of ALSlots slots of 4 KiB.
	ALFile = "online.al"
	// BitmapFile is the persisted dirty bitmap, one bit per 4 KiB block.
	BitmapFile = "online.bitmap"
)

// ALSlots is the number of slots in the activity log's ring: each
// transaction writes the next one, so the card's wear is spread.
const ALSlots = 8

const (
	alSlotSize = 4096
	alHeader   = 20
	// alMaxExtents is how many extents one slot can name.
	alMaxExtents = (alSlotSize - alHeader - 4) / 4
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

const alMagic = "PGOAL001"

// Byte map of a slot (little endian):
//
//	0  magic "PGOAL001"
//	8  sequence u64 (the newest valid slot wins)
//	16 extent count u32
//	20 count×u32 extent numbers
//	   zeroes up to 4092 | crc32c u32 of bytes 0..4092
func encodeSlot(seq uint64, exts []uint32) []byte {
	b := make([]byte, alSlotSize)
	copy(b, alMagic)
	le := binary.LittleEndian
	le.PutUint64(b[8:], seq)
	le.PutUint32(b[16:], uint32(len(exts)))
	for i, e := range exts {
		le.PutUint32(b[alHeader+4*i:], e)
	}
	le.PutUint32(b[alSlotSize-4:], crc32.Checksum(b[:alSlotSize-4], crcTable))
	return b
}

func decodeSlot(b []byte) (seq uint64, exts []uint32, ok bool) {
	if len(b) != alSlotSize || string(b[:8]) != alMagic {
		return 0, nil, false
	}
	le := binary.LittleEndian
	if crc32.Checksum(b[:alSlotSize-4], crcTable) != le.Uint32(b[alSlotSize-4:]) {
		return 0, nil, false
	}
	n := le.Uint32(b[16:])
	if n > alMaxExtents {
		return 0, nil, false
	}
	for i := range n {
		exts = append(exts, le.Uint32(b[alHeader+4*i:]))
	}
	return le.Uint64(b[8:]), exts, true
}

// onDisk is the activity log and bitmap files of a primary.
type onDisk struct {
	al, bm sdcard.File
	seq    uint64
	// bits is the bitmap file's content as last written.
	bits []byte
}

// openOnDisk opens (creating) both files and returns the active extents
// of the newest valid slot and the persisted bitmap.
func openOnDisk(store sdcard.Store, blocks uint64) (*onDisk, []uint32, error) {
	al, err := store.OpenFile(ALFile)
	if err != nil {
		return nil, nil, err
	}
	bm, err := store.OpenFile(BitmapFile)
	if err != nil {
		return nil, nil, errors.Join(err, al.Close())
	}
	d := &onDisk{al: al, bm: bm, bits: make([]byte, (blocks+7)/8)}
	var active []uint32
	slot := make([]byte, alSlotSize)
	for i := range int64(ALSlots) {
		n, err := al.ReadAt(slot, i*alSlotSize)
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, nil, errors.Join(fmt.Errorf("online: read %s: %w", ALFile, err), d.close())
		}
		if n < alSlotSize {
			continue
		}
		if seq, exts, ok := decodeSlot(slot); ok && seq >= d.seq {
			d.seq, active = seq, exts
		}
	}
	if _, err := bm.ReadAt(d.bits, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, errors.Join(fmt.Errorf("online: read %s: %w", BitmapFile, err), d.close())
	}
	// Bits past the device (a file from a larger device) mean nothing.
	if r := blocks % 8; r != 0 && len(d.bits) > 0 {
		d.bits[len(d.bits)-1] &= byte(1<<r) - 1
	}
	return d, active, nil
}

// commit persists the active set: first the bitmap pieces of the extents
// leaving it (synced), then the next slot of the ring (synced). After a
// power cut the old or the new set is in force, and an extent's dirty
// bits are on disk before the log stops naming it.
func (d *onDisk) commit(exts []uint32, pieces map[uint32][]byte) error {
	if len(pieces) > 0 {
		for _, e := range slices.Sorted(maps.Keys(pieces)) {
			off := int(e) * blocksPerExtent / 8
			if off >= len(d.bits) {
				continue
			}
			b := pieces[e][:min(len(pieces[e]), len(d.bits)-off)]
			if _, err := d.bm.WriteAt(b, int64(off)); err != nil {
				return fmt.Errorf("online: write %s: %w", BitmapFile, err)
			}
			copy(d.bits[off:], b)
		}
		if err := d.bm.Sync(); err != nil {
			return fmt.Errorf("online: sync %s: %w", BitmapFile, err)
		}
	}
	seq := d.seq + 1
	if _, err := d.al.WriteAt(encodeSlot(seq, exts), int64(seq%ALSlots)*alSlotSize); err != nil {
		return fmt.Errorf("online: write %s: %w", ALFile, err)
	}
	if err := d.al.Sync(); err != nil {
		return fmt.Errorf("online: sync %s: %w", ALFile, err)
	}
	d.seq = seq
	return nil
}

// extentOnDisk reports whether the bitmap file has a bit set in extent e.
func (d *onDisk) extentOnDisk(e uint32) bool {
	off := int(e) * blocksPerExtent / 8
	if off >= len(d.bits) {
		return false
	}
	for _, c := range d.bits[off:min(off+blocksPerExtent/8, len(d.bits))] {
		if c != 0 {
			return true
		}
	}
	return false
}

// clearBitmap zeroes the bitmap file (a resync completed).
func (d *onDisk) clearBitmap() error {
	if !slices.ContainsFunc(d.bits, func(c byte) bool { return c != 0 }) {
		return nil
	}
	clear(d.bits)
	if _, err := d.bm.WriteAt(d.bits, 0); err != nil {
		return fmt.Errorf("online: write %s: %w", BitmapFile, err)
	}
	if err := d.bm.Sync(); err != nil {
		return fmt.Errorf("online: sync %s: %w", BitmapFile, err)
	}
	return nil
}

func (d *onDisk) close() error { return errors.Join(d.al.Close(), d.bm.Close()) }
