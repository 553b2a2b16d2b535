// Package pcapfile writes failover-line frames as a classic pcap file
// (Ethernet link type, microsecond timestamps), the format `pairguard
// capture` and the snapshot produce. It is the writer of framepcap without
// gopacket: gopacket's layers package fills about 7 MiB of tables at
// start, which a daemon that links it keeps resident for ever.
package pcapfile

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/pairguard/pairguard/firmware/frame"
)

// Record is one captured frame.
type Record struct {
	Time     time.Time
	Dst, Src net.HardwareAddr
	Payload  []byte
}

const (
	snapLen      = 65536
	linkEthernet = 1
	minFrame     = 60 // an Ethernet frame without its FCS is padded to this
)

// Writer writes a pcap stream.
type Writer struct {
	w   io.Writer
	buf []byte
}

// NewWriter writes the file header to w.
func NewWriter(w io.Writer) (*Writer, error) {
	h := make([]byte, 24)
	binary.LittleEndian.PutUint32(h[0:], 0xa1b2c3d4)
	binary.LittleEndian.PutUint16(h[4:], 2)
	binary.LittleEndian.PutUint16(h[6:], 4)
	binary.LittleEndian.PutUint32(h[16:], snapLen)
	binary.LittleEndian.PutUint32(h[20:], linkEthernet)
	if _, err := w.Write(h); err != nil {
		return nil, fmt.Errorf("pcapfile: write header: %w", err)
	}
	return &Writer{w: w}, nil
}

// Write writes r as an Ethernet frame of the pairguard EtherType.
func (w *Writer) Write(r Record) error {
	if len(r.Dst) != 6 || len(r.Src) != 6 {
		return fmt.Errorf("pcapfile: bad MAC address %q or %q", r.Dst, r.Src)
	}
	eth := append(w.buf[:0], r.Dst...)
	eth = append(eth, r.Src...)
	eth = binary.BigEndian.AppendUint16(eth, frame.EtherType)
	eth = append(eth, r.Payload...)
	for len(eth) < minFrame {
		eth = append(eth, 0)
	}
	w.buf = eth
	var h [16]byte
	us := r.Time.UnixMicro()
	binary.LittleEndian.PutUint32(h[0:], uint32(us/1e6))
	binary.LittleEndian.PutUint32(h[4:], uint32(us%1e6))
	binary.LittleEndian.PutUint32(h[8:], uint32(len(eth)))
	binary.LittleEndian.PutUint32(h[12:], uint32(len(eth)))
	if _, err := w.w.Write(h[:]); err != nil {
		return fmt.Errorf("pcapfile: write packet: %w", err)
	}
	if _, err := w.w.Write(eth); err != nil {
		return fmt.Errorf("pcapfile: write packet: %w", err)
	}
	return nil
}
