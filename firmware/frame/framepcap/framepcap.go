// Package framepcap makes failover-line frames visible to gopacket and
// writes them to pcap files that tcpdump and Wireshark read.
//
// Importing the package registers LayerTypePairguard and binds it to
// EtherType 0x88B5 in gopacket's layers.EthernetTypeMetadata, so that
// gopacket.NewPacket on an Ethernet frame decodes our layer. The layer shows
// the fields as captured: it does NOT check the authenticator (a capture
// has no key); use frame.Decode for that.
package framepcap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/pairguard/pairguard/firmware/frame"
)

// LayerTypePairguard is the gopacket layer type of a failover-line frame.
// Its number is the EtherType, far above gopacket's own layer types.
var LayerTypePairguard = gopacket.RegisterLayerType(int(frame.EtherType), gopacket.LayerTypeMetadata{
	Name:    "Pairguard",
	Decoder: gopacket.DecodeFunc(decodeLayer),
})

func init() {
	layers.EthernetTypeMetadata[frame.EtherType] = layers.EnumMetadata{
		DecodeWith: gopacket.DecodeFunc(decodeLayer),
		Name:       "Pairguard",
		LayerType:  LayerTypePairguard,
	}
}

// Layer is a decoded failover-line frame. For a frame of another protocol
// version only Frame.Version, Frame.Type, Length and Auth are set.
type Layer struct {
	layers.BaseLayer
	// Frame holds the fields, unauthenticated.
	Frame frame.Frame
	// Length is the frame length announced in the header, authenticator
	// included.
	Length uint16
	// Auth is the authenticator as captured.
	Auth [frame.AuthLen]byte
}

// LayerType implements gopacket.Layer.
func (l *Layer) LayerType() gopacket.LayerType { return LayerTypePairguard }

// CanDecode implements gopacket.DecodingLayer.
func (l *Layer) CanDecode() gopacket.LayerClass { return LayerTypePairguard }

// NextLayerType implements gopacket.DecodingLayer: nothing follows a frame
// but Ethernet padding.
func (l *Layer) NextLayerType() gopacket.LayerType { return gopacket.LayerTypeZero }

// DecodeFromBytes implements gopacket.DecodingLayer. Trailing Ethernet
// padding is ignored.
func (l *Layer) DecodeFromBytes(data []byte, df gopacket.DecodeFeedback) error {
	var f frame.Frame
	err := f.UnmarshalBinary(data)
	var ve *frame.VersionError
	switch {
	case errors.As(err, &ve):
		f = frame.Frame{Version: ve.Version, Type: frame.Type(data[3])}
	case errors.Is(err, frame.ErrShort):
		df.SetTruncated()
		return fmt.Errorf("framepcap: %w", err)
	case err != nil:
		return fmt.Errorf("framepcap: %w", err)
	}
	n := int(binary.BigEndian.Uint16(data[4:6])) // checked by UnmarshalBinary
	*l = Layer{
		BaseLayer: layers.BaseLayer{Contents: data[:n]},
		Frame:     f,
		Length:    uint16(n),
	}
	copy(l.Auth[:], data[n-frame.AuthLen:n])
	return nil
}

func decodeLayer(data []byte, p gopacket.PacketBuilder) error {
	l := &Layer{}
	if err := l.DecodeFromBytes(data, p); err != nil {
		return err
	}
	p.AddLayer(l)
	return nil
}

// Record is one captured Ethernet frame carrying a failover-line frame.
type Record struct {
	// Time is the capture time.
	Time time.Time
	// Dst and Src are the Ethernet addresses.
	Dst, Src net.HardwareAddr
	// Payload is the failover-line frame as sent or received.
	Payload []byte
}

// Writer writes Records to a pcap stream (link type Ethernet).
type Writer struct {
	w   *pcapgo.Writer
	buf gopacket.SerializeBuffer
}

// NewWriter writes the pcap file header to w and returns a Writer.
func NewWriter(w io.Writer) (*Writer, error) {
	pw := pcapgo.NewWriter(w)
	if err := pw.WriteFileHeader(65536, layers.LinkTypeEthernet); err != nil {
		return nil, fmt.Errorf("framepcap: write header: %w", err)
	}
	return &Writer{w: pw, buf: gopacket.NewSerializeBuffer()}, nil
}

// Write appends one record, wrapped in an Ethernet header of EtherType
// 0x88B5.
func (w *Writer) Write(r Record) error {
	eth := &layers.Ethernet{
		SrcMAC:       r.Src,
		DstMAC:       r.Dst,
		EthernetType: layers.EthernetType(frame.EtherType),
	}
	if err := gopacket.SerializeLayers(w.buf, gopacket.SerializeOptions{}, eth, gopacket.Payload(r.Payload)); err != nil {
		return fmt.Errorf("framepcap: serialize: %w", err)
	}
	data := w.buf.Bytes()
	ci := gopacket.CaptureInfo{Timestamp: r.Time, CaptureLength: len(data), Length: len(data)}
	if err := w.w.WritePacket(ci, data); err != nil {
		return fmt.Errorf("framepcap: write packet: %w", err)
	}
	return nil
}

// WritePcap writes a complete pcap stream holding records to w.
func WritePcap(w io.Writer, records ...Record) error {
	pw, err := NewWriter(w)
	if err != nil {
		return err
	}
	for _, r := range records {
		if err := pw.Write(r); err != nil {
			return err
		}
	}
	return nil
}
