package nbd

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"
)

// streamConn plays a client's byte stream into the server and discards
// what the server sends.
type streamConn struct{ r io.Reader }

func (c streamConn) Read(b []byte) (int, error)     { return c.r.Read(b) }
func (streamConn) Write(b []byte) (int, error)      { return len(b), nil }
func (streamConn) Close() error                     { return nil }
func (streamConn) LocalAddr() net.Addr              { return nil }
func (streamConn) RemoteAddr() net.Addr             { return nil }
func (streamConn) SetDeadline(time.Time) error      { return nil }
func (streamConn) SetReadDeadline(time.Time) error  { return nil }
func (streamConn) SetWriteDeadline(time.Time) error { return nil }

func encRequest(typ, flags uint16, cookie, off uint64, length uint32, payload []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, magicRequest)
	b = binary.BigEndian.AppendUint16(b, flags)
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint64(b, cookie)
	b = binary.BigEndian.AppendUint64(b, off)
	b = binary.BigEndian.AppendUint32(b, length)
	return append(b, payload...)
}

func encOption(opt uint32, data []byte) []byte {
	b := binary.BigEndian.AppendUint64(nil, magicIHaveOpt)
	b = binary.BigEndian.AppendUint32(b, opt)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	return append(b, data...)
}

// FuzzServe feeds arbitrary client streams to the handshake and the
// transmission phase (first byte: 0 handshake, else transmission only).
// The server must neither panic nor hang, and must never write outside
// the export.
func FuzzServe(f *testing.F) {
	var hs []byte
	hs = binary.BigEndian.AppendUint32(hs, clientFixedNewstyle|clientNoZeroes)
	hs = append(hs, encOption(optList, nil)...)
	hs = append(hs, encOption(optInfo, infoData("", infoBlockSize, infoName))...)
	hs = append(hs, encOption(99, []byte("x"))...)
	hs = append(hs, encOption(optGo, infoData(""))...)
	reqs := encRequest(cmdWrite, cmdFlagFUA, 1, 100, 5, []byte("hello"))
	reqs = append(reqs, encRequest(cmdRead, 0, 2, 0, 512, nil)...)
	reqs = append(reqs, encRequest(cmdWriteZeroes, cmdFlagNoHole, 3, 4096, 4096, nil)...)
	reqs = append(reqs, encRequest(cmdTrim, 0, 4, 0, 1<<16, nil)...)
	reqs = append(reqs, encRequest(cmdFlush, 0, 5, 0, 0, nil)...)
	reqs = append(reqs, encRequest(cmdWrite, 0, 6, 1<<16-2, 4, []byte("edge"))...)
	reqs = append(reqs, encRequest(cmdDisc, 0, 7, 0, 0, nil)...)
	f.Add(append(append([]byte{0}, hs...), reqs...))
	f.Add(append([]byte{1}, reqs...))
	f.Add(append([]byte{0}, append(binary.BigEndian.AppendUint32(nil, clientFixedNewstyle), encOption(optExportName, nil)...)...))
	f.Add([]byte{0, 0, 0, 0, 1})
	f.Add(append([]byte{1}, encRequest(cmdWrite, 0, 1, 0, 1<<25, nil)...))
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			return
		}
		const size = 1 << 16
		m := NewMemBackend(size)
		s, err := NewServer(guard{t, m}, Options{HandshakeTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		c := streamConn{bytes.NewReader(in[1:])}
		if in[0] == 0 {
			s.ServeConn(c)
		} else {
			s.ServeTransmission(c)
		}
	})
}

// guard fails the test when the server passes the backend a range
// outside the export.
type guard struct {
	t *testing.T
	*MemBackend
}

func (g guard) in(off, n int64) {
	if off < 0 || n < 0 || off+n > g.Size() {
		g.t.Fatalf("backend called with offset %d length %d", off, n)
	}
}
func (g guard) ReadAt(p []byte, off int64) (int, error) {
	g.in(off, int64(len(p)))
	return g.MemBackend.ReadAt(p, off)
}
func (g guard) WriteAt(p []byte, off int64) (int, error) {
	g.in(off, int64(len(p)))
	return g.MemBackend.WriteAt(p, off)
}
func (g guard) Trim(off, n int64) error { g.in(off, n); return g.MemBackend.Trim(off, n) }
func (g guard) Zero(off, n int64, noHole bool) error {
	g.in(off, n)
	return g.MemBackend.Zero(off, n, noHole)
}

// FuzzParse checks the decoders: no panic, and what decodes re-encodes to
// the same bytes.
func FuzzParse(f *testing.F) {
	f.Add(encRequest(cmdRead, 0, 1, 2, 3, nil))
	f.Add(infoData("data", infoBlockSize))
	f.Add(encOption(optGo, infoData("")))
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := parseRequest(b); err == nil {
			if got := encRequest(r.typ, r.flags, r.cookie, r.offset, r.length, nil); !bytes.Equal(got, b[:requestHeaderLen]) {
				t.Fatalf("request %+v re-encodes to % x, want % x", r, got, b[:requestHeaderLen])
			}
		}
		if r, err := parseInfoRequest(b); err == nil {
			if got := infoData(r.name, r.infos...); !bytes.Equal(got, b) {
				t.Fatalf("info request %+v re-encodes to % x, want % x", r, got, b)
			}
		}
		if h, err := parseOptionHeader(b); err == nil {
			if got := encOption(h.option, nil)[:12]; !bytes.Equal(got, b[:12]) || binary.BigEndian.Uint32(b[12:]) != h.length {
				t.Fatalf("option header %+v from % x", h, b[:16])
			}
		}
	})
}
