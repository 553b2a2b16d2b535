package addr

import (
	"net"
	"testing"
)

func TestVirtualMAC(t *testing.T) {
	tests := []struct {
		id   uint32
		want string
	}{
		{0, "02:50:00:00:00:00"},
		{0x11223344, "02:50:11:22:33:44"},
		{0xffffffff, "02:50:ff:ff:ff:ff"},
	}
	for _, tt := range tests {
		got := VirtualMAC(tt.id)
		if got.String() != tt.want {
			t.Errorf("VirtualMAC(%#x) = %v, want %s", tt.id, got, tt.want)
		}
		if got[0]&0x02 == 0 || got[0]&0x01 != 0 {
			t.Errorf("VirtualMAC(%#x) = %v is not a locally administered unicast address", tt.id, got)
		}
	}
	seen := map[string]uint32{}
	for _, id := range []uint32{1, 1 << 8, 1 << 16, 1 << 24, 0x01000001} {
		s := VirtualMAC(id).String()
		if prev, ok := seen[s]; ok {
			t.Errorf("pair ids %#x and %#x share %s", prev, id, s)
		}
		seen[s] = id
	}
	var _ net.HardwareAddr = VirtualMAC(0)
}
