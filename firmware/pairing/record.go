package pairing

import (
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// Record is what a node persists once both sides accepted: the pair key
// both derived, the peer's identity and pinned ed25519 key, and the
// pair-level settings (the main's own at pairing time; the spare's adopted
// copy, which replaces those keys of its config).
//
// The file is written by the daemon through drivers/durable (write, fsync,
// rename); this package only encodes it.
type Record struct {
	Role     Role // this node's role in the pair
	NodeID   uint64
	Peer     Peer
	PairKey  [PairKeyLen]byte
	Settings Settings
}

// PairKeyLen is the length of the derived pair key.
const PairKeyLen = 32

// ErrRecord: a record file is damaged (bad checksum, bad length, unknown
// version). The daemon treats it as unpaired and raises an alarm; it never
// guesses.
var ErrRecord = errors.New("pairing: damaged pair record")

var recordMagic = [4]byte{'P', 'G', 'P', 'R'}

const (
	recordVersion = 1
	recordFixed   = 4 + 1 + 1 + 8 + 8 + PairKeyLen + ed25519.PublicKeySize // 86
	recordMin     = recordFixed + 3*2 + 4
)

// castagnoli is the CRC-32C table.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// MarshalBinary encodes the record:
//
//	 0      4   5    6         14        22          54          86
//	+------+---+----+---------+---------+-----------+-----------+---------------------------+-------+
//	|"PGPR"|ver|role| node id | peer id | pair key  | peer key  | name | software | settings | CRC32C|
//	+------+---+----+---------+---------+-----------+-----------+---------------------------+-------+
//
// name, software and settings each carry a two-byte big-endian length; the
// CRC-32C (Castagnoli) covers every byte before it.
func (r *Record) MarshalBinary() ([]byte, error) {
	if !r.Role.valid() || r.NodeID == 0 || r.Peer.NodeID == 0 {
		return nil, fmt.Errorf("pairing: record: role %v, node %x, peer %x", r.Role, r.NodeID, r.Peer.NodeID)
	}
	if len(r.Peer.Key) != ed25519.PublicKeySize || len(r.Peer.Name) > MaxNameLen || len(r.Peer.Software) > MaxSoftwareLen {
		return nil, fmt.Errorf("pairing: record: bad peer identity")
	}
	settings, err := r.Settings.MarshalBinary()
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, recordMin+len(r.Peer.Name)+len(r.Peer.Software)+len(settings))
	b = append(b, recordMagic[:]...)
	b = append(b, recordVersion, byte(r.Role))
	b = binary.BigEndian.AppendUint64(b, r.NodeID)
	b = binary.BigEndian.AppendUint64(b, r.Peer.NodeID)
	b = append(b, r.PairKey[:]...)
	b = append(b, r.Peer.Key...)
	for _, f := range [][]byte{[]byte(r.Peer.Name), []byte(r.Peer.Software), settings} {
		b = binary.BigEndian.AppendUint16(b, uint16(len(f)))
		b = append(b, f...)
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli)), nil
}

// UnmarshalBinary decodes a record, checking the length and checksum
// before anything else.
func (r *Record) UnmarshalBinary(b []byte) error {
	if len(b) < recordMin {
		return fmt.Errorf("%w: %w", ErrRecord, io.ErrUnexpectedEOF)
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return fmt.Errorf("%w: checksum", ErrRecord)
	}
	if [4]byte(body[:4]) != recordMagic || body[4] != recordVersion {
		return fmt.Errorf("%w: not a version %d pair record", ErrRecord, recordVersion)
	}
	var out Record
	out.Role = Role(body[5])
	if !out.Role.valid() {
		return fmt.Errorf("%w: role %d", ErrRecord, body[5])
	}
	out.NodeID = binary.BigEndian.Uint64(body[6:])
	out.Peer.NodeID = binary.BigEndian.Uint64(body[14:])
	copy(out.PairKey[:], body[22:54])
	out.Peer.Key = ed25519.PublicKey(append([]byte(nil), body[54:86]...))
	rest := body[recordFixed:]
	var fields [3][]byte
	for i := range fields {
		if len(rest) < 2 {
			return fmt.Errorf("%w: %w", ErrRecord, io.ErrUnexpectedEOF)
		}
		n := int(binary.BigEndian.Uint16(rest))
		if n > len(rest)-2 {
			return fmt.Errorf("%w: %w", ErrRecord, io.ErrUnexpectedEOF)
		}
		fields[i], rest = rest[2:2+n], rest[2+n:]
	}
	if len(rest) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrRecord, len(rest))
	}
	out.Peer.Name, out.Peer.Software = string(fields[0]), string(fields[1])
	if err := out.Settings.UnmarshalBinary(fields[2]); err != nil {
		return fmt.Errorf("%w: %w", ErrRecord, err)
	}
	if out.NodeID == 0 || out.Peer.NodeID == 0 {
		return fmt.Errorf("%w: zero node id", ErrRecord)
	}
	*r = out
	return nil
}
