package sdcard

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
)

// MetaFile is the metadata's file name inside the state directory.
const MetaFile = "mirror.meta"

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// ErrMetaCorrupt is returned when the metadata file fails its checksum.
var ErrMetaCorrupt = errors.New("sdcard: metadata corrupt")

// Meta is the mirror's persistent state. Save writes it with
// write-fsync-rename and a CRC32C, so a power cut leaves the old or the
// new copy.
type Meta struct {
	NodeID uint64
	Epoch  uint64
	Gen    GenInfo
	// BitmapValid says every write since the last completed round as
	// source went through the mirror and is marked in Dirty, and the peer
	// then held generation SyncedGen.
	BitmapValid bool
	SyncedGen   uint64
	BlockSize   int
	Dirty       *Bitmap
	// BaseGen and BaseSum describe the device at the end of the last
	// completed round: the generation it then held and the digest of its
	// block sums ([Digest]). A split brain resolves by itself only toward
	// the side that changed, when the other still matches its base.
	BaseGen uint64
	BaseSum Sum

	store Store
}

// Byte map of the file (little endian):
//
//	0  magic "PGMIRMT1"
//	8  node id u64 | epoch u64 | current u64 | synced-gen u64
//	40 data u8 | flags u8 (bit 0 bitmap valid) | history count u8 | pad u8
//	44 block size u32 | blocks u64
//	56 history count×u64 | bitmap (blocks+63)/64×u64
//	   base gen u64 | base sum 16 bytes (version 2 only) | crc32c u32 of all before
//
// Version 1 files (magic "PGMIRMT1", no base) are read as having no base.
const (
	metaMagic   = "PGMIRMT2"
	metaMagicV1 = "PGMIRMT1"
)

// LoadMeta reads the metadata in store for a device of the given
// geometry. A missing file gives fresh metadata: a random node id, no
// generation, data inconsistent. A file for another geometry keeps its
// generations but gets a new, invalid bitmap.
func LoadMeta(store Store, g Geometry) (*Meta, error) {
	b, err := store.ReadFile(MetaFile)
	if errors.Is(err, os.ErrNotExist) {
		var id [8]byte
		if _, err := io.ReadFull(rand.Reader, id[:]); err != nil {
			return nil, fmt.Errorf("sdcard: node id: %w", err)
		}
		return &Meta{
			NodeID:    binary.LittleEndian.Uint64(id[:]) | 1,
			Gen:       GenInfo{Data: DataInconsistent},
			BlockSize: g.BlockSize,
			Dirty:     NewBitmap(g.Blocks()),
			store:     store,
		}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sdcard: read metadata: %w", err)
	}
	m, blocks, err := unmarshalMeta(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrMetaCorrupt, MetaFile, err)
	}
	m.store = store
	if blocks != g.Blocks() || m.BlockSize != g.BlockSize {
		m.BlockSize = g.BlockSize
		m.Dirty = NewBitmap(g.Blocks())
		m.BitmapValid = false
	}
	return m, nil
}

func unmarshalMeta(b []byte) (*Meta, uint64, error) {
	if len(b) < 60 {
		return nil, 0, io.ErrUnexpectedEOF
	}
	v2 := string(b[:8]) == metaMagic
	if !v2 && string(b[:8]) != metaMagicV1 {
		return nil, 0, errors.New("bad magic")
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, crcTable) != sum {
		return nil, 0, errors.New("checksum mismatch")
	}
	le := binary.LittleEndian
	m := &Meta{
		NodeID:    le.Uint64(b[8:]),
		Epoch:     le.Uint64(b[16:]),
		SyncedGen: le.Uint64(b[32:]),
	}
	m.Gen.Current = le.Uint64(b[24:])
	m.Gen.Data = DataState(b[40])
	m.BitmapValid = b[41]&1 != 0
	nh := int(b[42])
	m.BlockSize = int(le.Uint32(b[44:]))
	blocks := le.Uint64(b[48:])
	if !m.Gen.Data.Valid() || nh > MaxHistory || blocks > 1<<40 {
		return nil, 0, errors.New("bad field")
	}
	words := (blocks + 63) / 64
	tail := uint64(0)
	if v2 {
		tail = 24
	}
	if uint64(len(body)) != 56+uint64(nh)*8+words*8+tail {
		return nil, 0, errors.New("bad length")
	}
	p := b[56:]
	for range nh {
		m.Gen.History = append(m.Gen.History, le.Uint64(p))
		p = p[8:]
	}
	m.Dirty = NewBitmap(blocks)
	for i := range m.Dirty.words {
		m.Dirty.words[i] = le.Uint64(p)
		p = p[8:]
	}
	if v2 {
		m.BaseGen = le.Uint64(p)
		copy(m.BaseSum[:], p[8:24])
	}
	return m, blocks, nil
}

func (m *Meta) marshal() []byte {
	le := binary.LittleEndian
	b := make([]byte, 56, 56+len(m.Gen.History)*8+len(m.Dirty.words)*8+28)
	copy(b, metaMagic)
	le.PutUint64(b[8:], m.NodeID)
	le.PutUint64(b[16:], m.Epoch)
	le.PutUint64(b[24:], m.Gen.Current)
	le.PutUint64(b[32:], m.SyncedGen)
	b[40] = byte(m.Gen.Data)
	if m.BitmapValid {
		b[41] = 1
	}
	b[42] = byte(len(m.Gen.History))
	le.PutUint32(b[44:], uint32(m.BlockSize))
	le.PutUint64(b[48:], m.Dirty.Len())
	for _, h := range m.Gen.History {
		b = le.AppendUint64(b, h)
	}
	for _, w := range m.Dirty.words {
		b = le.AppendUint64(b, w)
	}
	b = le.AppendUint64(b, m.BaseGen)
	b = append(b, m.BaseSum[:]...)
	return le.AppendUint32(b, crc32.Checksum(b, crcTable))
}

// Save writes the metadata durably: a temporary file, fsync, rename over
// the old one, fsync of the directory.
func (m *Meta) Save() error {
	if len(m.Gen.History) > MaxHistory {
		m.Gen.History = m.Gen.History[:MaxHistory]
	}
	return m.store.WriteFile(MetaFile, m.marshal())
}

// NewGeneration starts a generation: the current identifier moves into
// the history and a random one becomes current; the data is up-to-date.
// The caller saves.
func (m *Meta) NewGeneration() error {
	var b [8]byte
	if _, err := io.ReadFull(rand.Reader, b[:]); err != nil {
		return fmt.Errorf("sdcard: generation id: %w", err)
	}
	if m.Gen.Current != 0 {
		m.Gen.History = append([]uint64{m.Gen.Current}, m.Gen.History...)
		if len(m.Gen.History) > MaxHistory {
			m.Gen.History = m.Gen.History[:MaxHistory]
		}
	}
	m.Gen.Current = binary.LittleEndian.Uint64(b[:]) | 1
	m.Gen.Data = DataUpToDate
	return nil
}
