package sdcard

// The target's sum cache: a secondary's device changes only through the
// rounds it receives, so the block sums it computes for the digest at the
// end of a round ([Mirror.targetBase]) are the sums the next round asks
// for. They are kept in a file of the state directory and answer the next
// checksum round without reading the device, when nothing says they may
// be stale.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
)

// SumsFile is the sum cache's file name inside the state directory.
const SumsFile = "mirror.sums"

// maxCachedRounds is how many checksum rounds in a row may answer from
// the cache; the next one reads the device, so that a change the stamp
// cannot see (a card that corrupts data, a writer within the timestamp
// granularity of an image file) is repaired within maxCachedRounds+1
// rounds, as every round repaired it before the cache.
const maxCachedRounds = 8

// sumCache byte map (little endian):
//
//	0 magic "PGSUMS01" | 8 generation u64 | 16 size u64 | 24 block size u32 | 28 hash u8
//	29 rounds u8 (answered from the cache since the device was last read whole)
//	30 stamp length u16 | 32 stamp | sums count×16 | crc32c u32 of all before
const sumsMagic = "PGSUMS01"

// sumCache is the device's block sums as the round of generation Gen left
// it. It is trusted only when the metadata says the node is up-to-date in
// that generation with a base digest ([Meta].BaseSum) equal to the digest
// of these sums, so a file left from an earlier round (a crash before it
// was rewritten) is never used; Stamp is the device's change stamp at the
// time, so a write that bypassed the mirror makes it stale as well.
type sumCache struct {
	Gen    uint64
	Geom   Geometry
	Hash   HashKind
	Rounds int
	Stamp  []byte
	Sums   []Sum
}

func (c *sumCache) marshal() []byte {
	le := binary.LittleEndian
	b := make([]byte, 0, 36+len(c.Stamp)+16*len(c.Sums))
	b = append(b, sumsMagic...)
	b = le.AppendUint64(b, c.Gen)
	b = le.AppendUint64(b, uint64(c.Geom.Size))
	b = le.AppendUint32(b, uint32(c.Geom.BlockSize))
	b = append(b, byte(c.Hash), byte(min(c.Rounds, 255)))
	b = le.AppendUint16(b, uint16(len(c.Stamp)))
	b = append(b, c.Stamp...)
	for _, s := range c.Sums {
		b = append(b, s[:]...)
	}
	return le.AppendUint32(b, crc32.Checksum(b, crcTable))
}

func unmarshalSumCache(b []byte) (*sumCache, error) {
	le := binary.LittleEndian
	if len(b) < 36 || string(b[:8]) != sumsMagic {
		return nil, errors.New("bad magic or length")
	}
	body := b[:len(b)-4]
	if crc32.Checksum(body, crcTable) != le.Uint32(b[len(b)-4:]) {
		return nil, errors.New("checksum mismatch")
	}
	c := &sumCache{
		Gen:    le.Uint64(b[8:]),
		Geom:   Geometry{Size: int64(le.Uint64(b[16:]) & (1<<62 - 1)), BlockSize: int(le.Uint32(b[24:]))},
		Hash:   HashKind(b[28]),
		Rounds: int(b[29]),
	}
	ns := int(le.Uint16(b[30:]))
	if len(body) < 32+ns || CheckBlockSize(c.Geom.BlockSize) != nil {
		return nil, errors.New("bad field")
	}
	c.Stamp = body[32 : 32+ns]
	rest := body[32+ns:]
	if uint64(len(rest)) != 16*c.Geom.Blocks() {
		return nil, errors.New("bad length")
	}
	c.Sums = make([]Sum, len(rest)/16)
	for i := range c.Sums {
		copy(c.Sums[i][:], rest[16*i:])
	}
	return c, nil
}

// cachedSums returns the sums of the device for a checksum round over g
// from the cache, with the number of rounds it answered in a row, or nil
// when the cache is missing or cannot be trusted.
func (m *Mirror) cachedSums(g Geometry) ([]Sum, int) {
	if m.stamp == nil {
		return nil, 0
	}
	m.mu.Lock()
	gen, base, baseGen, primary := m.meta.Gen, m.meta.BaseSum, m.meta.BaseGen, m.primary
	m.mu.Unlock()
	if primary || gen.Data != DataUpToDate || gen.Current == 0 || baseGen != gen.Current || g.Size != m.geom.Size {
		return nil, 0
	}
	b, err := m.store.ReadFile(SumsFile)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			m.log.Debug("mirror sum cache unreadable", "reason", err)
		}
		return nil, 0
	}
	c, err := unmarshalSumCache(b)
	why := ""
	switch {
	case err != nil:
		why = err.Error()
	case c.Gen != gen.Current || c.Geom != g || c.Hash != m.cfg.Hash:
		why = "another generation or geometry"
	case c.Rounds >= maxCachedRounds:
		why = fmt.Sprintf("%d rounds in a row answered from it", c.Rounds)
	case Digest(m.cfg.Hash, c.Sums) != base:
		why = "not the sums of the last completed round"
	default:
		now, err := m.stamp()
		if err != nil {
			why = "no change stamp: " + err.Error()
		} else if string(now) != string(c.Stamp) {
			why = "the device was written since"
		}
	}
	if why != "" {
		m.log.Debug("mirror sum cache not used", "reason", why)
		return nil, 0
	}
	return c.Sums, c.Rounds
}

// saveSums writes the sum cache after a round that left the device with
// sums (of geometry g, generation gen); rounds says how many rounds in a
// row answered from the cache, counting this one. A failure only costs
// the next round a scan.
func (m *Mirror) saveSums(g Geometry, gen uint64, sums []Sum, rounds int) {
	if m.stamp == nil || sums == nil || g.Size != m.geom.Size || uint64(len(sums)) != g.Blocks() {
		m.dropSums()
		return
	}
	st, err := m.stamp()
	if err == nil {
		c := sumCache{Gen: gen, Geom: g, Hash: m.cfg.Hash, Rounds: rounds, Stamp: st, Sums: sums}
		err = m.store.WriteFile(SumsFile, c.marshal())
	}
	if err != nil {
		m.log.Debug("mirror cannot save the sum cache", "reason", err)
		m.dropSums()
	}
}

// dropSums makes the cache file unusable (a best effort: a file that
// stays is still checked against the metadata's base digest).
func (m *Mirror) dropSums() {
	_ = m.store.WriteFile(SumsFile, nil)
}
