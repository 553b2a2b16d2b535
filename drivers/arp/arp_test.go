package arp

import (
	"net"
	"net/netip"
	"testing"

	marp "github.com/mdlayher/arp"
)

var (
	ownMAC   = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	otherMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
	svc      = netip.MustParseAddr("192.0.2.10")
	gw       = netip.MustParseAddr("192.0.2.1")
	zeroIP   = netip.IPv4Unspecified()
)

func mustPacket(t *testing.T, op marp.Operation, sha net.HardwareAddr, sip netip.Addr, tha net.HardwareAddr, tip netip.Addr) *marp.Packet {
	t.Helper()
	p, err := marp.NewPacket(op, sha, sip, tha, tip)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestProbePacket(t *testing.T) {
	p, err := probePacket(ownMAC, svc)
	if err != nil {
		t.Fatal(err)
	}
	if p.Operation != marp.OperationRequest || p.SenderIP != zeroIP || p.TargetIP != svc ||
		p.SenderHardwareAddr.String() != ownMAC.String() || p.TargetHardwareAddr.String() != zeroMAC.String() {
		t.Errorf("probe packet = %+v; want request 0.0.0.0 -> %s, target MAC zero", p, svc)
	}
}

func TestAnnouncePackets(t *testing.T) {
	req, reply, err := announcePackets(svc, otherMAC)
	if err != nil {
		t.Fatal(err)
	}
	if req.Operation != marp.OperationRequest || req.SenderIP != svc || req.TargetIP != svc ||
		req.SenderHardwareAddr.String() != otherMAC.String() || req.TargetHardwareAddr.String() != zeroMAC.String() {
		t.Errorf("request form = %+v", req)
	}
	if reply.Operation != marp.OperationReply || reply.SenderIP != svc || reply.TargetIP != svc ||
		reply.SenderHardwareAddr.String() != otherMAC.String() || reply.TargetHardwareAddr.String() != otherMAC.String() {
		t.Errorf("reply form = %+v", reply)
	}
	// Both survive a round trip through the wire format.
	for _, p := range []*marp.Packet{req, reply} {
		b, err := p.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var q marp.Packet
		if err := q.UnmarshalBinary(b); err != nil {
			t.Fatal(err)
		}
		if !valid(&q) || q.SenderIP != svc || q.Operation != p.Operation {
			t.Errorf("round trip of %+v gave %+v", p, q)
		}
	}
}

func TestConflict(t *testing.T) {
	tests := []struct {
		name string
		p    *marp.Packet
		want bool
	}{
		{"reply from holder", mustPacket(t, marp.OperationReply, otherMAC, svc, ownMAC, zeroIP), true},
		{"holder's gratuitous request", mustPacket(t, marp.OperationRequest, otherMAC, svc, zeroMAC, svc), true},
		{"holder asks for the gateway", mustPacket(t, marp.OperationRequest, otherMAC, svc, zeroMAC, gw), true},
		{"another host probes the address", mustPacket(t, marp.OperationRequest, otherMAC, zeroIP, zeroMAC, svc), true},
		{"our own probe", mustPacket(t, marp.OperationRequest, ownMAC, zeroIP, zeroMAC, svc), false},
		{"our own announcement", mustPacket(t, marp.OperationReply, ownMAC, svc, ownMAC, svc), false},
		{"someone asks for the address", mustPacket(t, marp.OperationRequest, otherMAC, gw, zeroMAC, svc), false},
		{"another host probes another address", mustPacket(t, marp.OperationRequest, otherMAC, zeroIP, zeroMAC, gw), false},
		{"unrelated reply", mustPacket(t, marp.OperationReply, otherMAC, gw, ownMAC, zeroIP), false},
	}
	for _, tt := range tests {
		if got := conflict(tt.p, svc, ownMAC); got != tt.want {
			t.Errorf("%s: conflict = %t, want %t", tt.name, got, tt.want)
		}
	}
}

func TestAnswers(t *testing.T) {
	tests := []struct {
		name string
		p    *marp.Packet
		want bool
	}{
		{"reply", mustPacket(t, marp.OperationReply, otherMAC, gw, ownMAC, zeroIP), true},
		{"request from the witness", mustPacket(t, marp.OperationRequest, otherMAC, gw, zeroMAC, svc), true},
		{"someone else asks for the witness", mustPacket(t, marp.OperationRequest, otherMAC, svc, zeroMAC, gw), false},
		{"our own request", mustPacket(t, marp.OperationRequest, ownMAC, gw, zeroMAC, gw), false},
	}
	for _, tt := range tests {
		if got := answers(tt.p, gw, ownMAC); got != tt.want {
			t.Errorf("%s: answers = %t, want %t", tt.name, got, tt.want)
		}
	}
}
