package nbd

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"
)

// Expected attributes are built here by hand (not with the netlink
// package's encoder): length, type, value, padding, host byte order.
func attr(typ uint16, value []byte) []byte {
	b := binary.NativeEndian.AppendUint16(nil, uint16(4+len(value)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, value...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func u32(typ uint16, v uint32) []byte { return attr(typ, binary.NativeEndian.AppendUint32(nil, v)) }
func u64(typ uint16, v uint64) []byte { return attr(typ, binary.NativeEndian.AppendUint64(nil, v)) }
func nested(typ uint16, parts ...[]byte) []byte {
	return attr(typ|0x8000, bytes.Join(parts, nil)) // NLA_F_NESTED
}
func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestEncodeConnect(t *testing.T) {
	cfg := Config{
		Index:           0,
		Size:            1 << 30,
		BlockSize:       4096,
		ServerFlags:     0x16d,
		Timeout:         1500 * time.Millisecond, // rounds up to 2 s
		DeadConnTimeout: 30 * time.Second,
		Identifier:      "pg",
	}
	got, err := encodeConnect(cfg, []int{5, 7})
	if err != nil {
		t.Fatal(err)
	}
	want := cat(
		u32(1, 0),                  // NBD_ATTR_INDEX
		u64(2, 1<<30),              // NBD_ATTR_SIZE_BYTES
		u64(3, 4096),               // NBD_ATTR_BLOCK_SIZE_BYTES
		u64(5, 0x16d),              // NBD_ATTR_SERVER_FLAGS
		u64(6, 0),                  // NBD_ATTR_CLIENT_FLAGS
		u64(4, 2),                  // NBD_ATTR_TIMEOUT
		u64(8, 30),                 // NBD_ATTR_DEAD_CONN_TIMEOUT
		attr(10, []byte("pg\x00")), // NBD_ATTR_BACKEND_IDENTIFIER, NUL-terminated
		nested(7, // NBD_ATTR_SOCKETS
			nested(1, u32(1, 5)), // NBD_SOCK_ITEM{NBD_SOCK_FD 5}
			nested(1, u32(1, 7)),
		),
	)
	if !bytes.Equal(got, want) {
		t.Fatalf("connect attributes\n got % x\nwant % x", got, want)
	}
	// Literal bytes of the first attribute on a little-endian host, to
	// pin the layout itself: len 8, type 1, value 0.
	if binary.NativeEndian.Uint16([]byte{1, 0}) == 1 && !bytes.Equal(got[:8], []byte{8, 0, 1, 0, 0, 0, 0, 0}) {
		t.Fatalf("NBD_ATTR_INDEX % x", got[:8])
	}
}

func TestEncodeConnectDefaults(t *testing.T) {
	got, err := encodeConnect(Config{Index: -1, Size: 8192}, []int{3})
	if err != nil {
		t.Fatal(err)
	}
	want := cat(u64(2, 8192), u64(3, 4096), u64(5, 0), u64(6, 0), nested(7, nested(1, u32(1, 3))))
	if !bytes.Equal(got, want) {
		t.Fatalf("got % x\nwant % x", got, want)
	}
}

func TestEncodeReconfigureDisconnect(t *testing.T) {
	got, err := encodeReconfigure(3, Reconfig{Identifier: "pg", DeadConnTimeout: 10 * time.Second, Timeout: 2500 * time.Millisecond}, []int{9})
	if err != nil {
		t.Fatal(err)
	}
	if want := cat(u32(1, 3), u64(4, 3), u64(8, 10), attr(10, []byte("pg\x00")), nested(7, nested(1, u32(1, 9)))); !bytes.Equal(got, want) {
		t.Fatalf("reconfigure\n got % x\nwant % x", got, want)
	}
	got, err = encodeReconfigure(3, Reconfig{}, []int{9, 10})
	if err != nil {
		t.Fatal(err)
	}
	if want := cat(u32(1, 3), nested(7, nested(1, u32(1, 9)), nested(1, u32(1, 10)))); !bytes.Equal(got, want) {
		t.Fatalf("reconfigure without timeouts or identifier\n got % x\nwant % x", got, want)
	}
	got, err = encodeDisconnect(12)
	if err != nil {
		t.Fatal(err)
	}
	if want := u32(1, 12); !bytes.Equal(got, want) {
		t.Fatalf("disconnect % x, want % x", got, want)
	}
	if _, err := encodeReconfigure(-1, Reconfig{}, []int{1}); err == nil {
		t.Error("reconfigure of index -1 accepted")
	}
	if _, err := encodeReconfigure(0, Reconfig{}, nil); err == nil {
		t.Error("reconfigure without sockets accepted")
	}
	if _, err := encodeReconfigure(0, Reconfig{DeadConnTimeout: -1}, []int{1}); err == nil {
		t.Error("negative dead-connection timeout accepted")
	}
	if _, err := encodeDisconnect(-1); err == nil {
		t.Error("disconnect of index -1 accepted")
	}
}

func TestEncodeStatus(t *testing.T) {
	got, err := encodeStatus(2)
	if err != nil {
		t.Fatal(err)
	}
	if want := u32(1, 2); !bytes.Equal(got, want) {
		t.Fatalf("status % x, want % x", got, want)
	}
	if _, err := encodeStatus(-1); err == nil {
		t.Error("status of index -1 accepted")
	}
}

// The kernel's STATUS reply: NBD_ATTR_DEVICE_LIST (9) of NBD_DEVICE_ITEM
// (1) {NBD_DEVICE_INDEX (1) u32, NBD_DEVICE_CONNECTED (2) u8}, nested
// without NLA_F_NESTED (nla_nest_start_noflag).
func TestDecodeStatus(t *testing.T) {
	plain := func(typ uint16, parts ...[]byte) []byte { return attr(typ, bytes.Join(parts, nil)) }
	item := func(idx uint32, conn byte) []byte { return plain(1, u32(1, idx), attr(2, []byte{conn})) }
	cases := []struct {
		reply []byte
		index int
		want  bool
	}{
		{plain(9, item(0, 1)), 0, true},
		{plain(9, item(0, 0)), 0, false},
		{plain(9), 0, false}, // no such device
		{plain(9, item(1, 0), item(3, 1)), 3, true},
		{plain(9, item(1, 0), item(3, 1)), 1, false},
		{nested(9, nested(1, u32(1, 5), attr(2, []byte{1}))), 5, true}, // with NLA_F_NESTED too
	}
	for i, c := range cases {
		got, err := decodeStatus(c.reply, c.index)
		if err != nil || got != c.want {
			t.Errorf("case %d: connected %v, %v; want %v", i, got, err, c.want)
		}
	}
	if _, err := decodeStatus([]byte{1, 2, 3}, 0); err == nil {
		t.Error("truncated reply accepted")
	}
}

func TestConfigValidate(t *testing.T) {
	bad := []Config{
		{Index: -2, Size: 4096},
		{Size: 0},
		{Size: 4097},
		{Size: 4096, BlockSize: 256},
		{Size: 1 << 20, BlockSize: 3072},
		{Size: 1 << 20, BlockSize: 1 << 17},
		{Size: 4096, Timeout: -1},
		{Size: 4096, DeadConnTimeout: -time.Second},
	}
	for _, c := range bad {
		if _, err := encodeConnect(c, []int{3}); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	if _, err := encodeConnect(Config{Size: 4096}, nil); err == nil {
		t.Error("connect without sockets accepted")
	}
	if _, err := encodeConnect(Config{Size: 1 << 20, BlockSize: 512}, []int{3}); err != nil {
		t.Errorf("512-byte blocks refused: %v", err)
	}
}

func TestDecodeIndex(t *testing.T) {
	if n, err := decodeIndex(cat(u64(2, 5), u32(1, 7))); err != nil || n != 7 {
		t.Fatalf("index %d, %v", n, err)
	}
	if _, err := decodeIndex(u64(2, 5)); err == nil {
		t.Fatal("reply without index accepted")
	}
	if _, err := decodeIndex([]byte{1, 2, 3}); err == nil {
		t.Fatal("truncated reply accepted")
	}
}

func TestParseDevice(t *testing.T) {
	good := map[string]int{"/dev/nbd0": 0, "/dev/nbd15": 15}
	for p, want := range good {
		if n, err := ParseDevice(p); err != nil || n != want {
			t.Errorf("%s: %d, %v", p, n, err)
		}
	}
	for _, p := range []string{"/dev/nbd", "/dev/nbd0p1", "/dev/sda", "nbd0", "/dev/nbd-1", "/dev/nbd01", "/dev/nbdx"} {
		if _, err := ParseDevice(p); err == nil {
			t.Errorf("%s accepted", p)
		}
	}
}
