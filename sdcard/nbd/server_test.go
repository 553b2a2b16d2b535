package nbd

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"
)

// startServer serves b on a fresh Unix socket and returns its path.
func startServer(t *testing.T, b Backend, o Options) (*Server, string) {
	t.Helper()
	s, err := NewServer(b, o)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "pgnbd") // short: socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "nbd.sock")
	l, err := ListenUnix(path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
		os.RemoveAll(dir)
	})
	return s, path
}

// tclient is a minimal NBD client for the tests, written against the
// protocol document like the server but kept separate from it.
type tclient struct {
	t *testing.T
	c net.Conn
}

func dialRaw(t *testing.T, path string) *tclient {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return &tclient{t: t, c: c}
}

// hello reads the server greeting and sends the client flags.
func (tc *tclient) hello(cflags uint32) {
	tc.t.Helper()
	var g [18]byte
	tc.read(g[:])
	if binary.BigEndian.Uint64(g[:]) != magicNBD || binary.BigEndian.Uint64(g[8:]) != magicIHaveOpt {
		tc.t.Fatalf("greeting % x", g)
	}
	if f := binary.BigEndian.Uint16(g[16:]); f != flagFixedNewstyle|flagNoZeroes {
		tc.t.Fatalf("handshake flags %#x", f)
	}
	tc.write(binary.BigEndian.AppendUint32(nil, cflags))
}

func (tc *tclient) read(b []byte) {
	tc.t.Helper()
	if _, err := io.ReadFull(tc.c, b); err != nil {
		tc.t.Fatalf("read: %v", err)
	}
}

func (tc *tclient) write(b []byte) {
	tc.t.Helper()
	if _, err := tc.c.Write(b); err != nil {
		tc.t.Fatalf("write: %v", err)
	}
}

func (tc *tclient) option(opt uint32, data []byte) {
	tc.t.Helper()
	b := binary.BigEndian.AppendUint64(nil, magicIHaveOpt)
	b = binary.BigEndian.AppendUint32(b, opt)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	tc.write(append(b, data...))
}

type optReply struct {
	option, typ uint32
	data        []byte
}

func (tc *tclient) optReply() optReply {
	tc.t.Helper()
	var h [20]byte
	tc.read(h[:])
	if m := binary.BigEndian.Uint64(h[:]); m != magicOptReply {
		tc.t.Fatalf("option reply magic %#x", m)
	}
	r := optReply{option: binary.BigEndian.Uint32(h[8:]), typ: binary.BigEndian.Uint32(h[12:])}
	r.data = make([]byte, binary.BigEndian.Uint32(h[16:]))
	tc.read(r.data)
	return r
}

func infoData(name string, infos ...uint16) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
	b = append(b, name...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(infos)))
	for _, i := range infos {
		b = binary.BigEndian.AppendUint16(b, i)
	}
	return b
}

// goExport runs NBD_OPT_GO and returns size and flags.
func (tc *tclient) goExport(name string) (uint64, uint16) {
	tc.t.Helper()
	tc.option(optGo, infoData(name, infoBlockSize))
	var size uint64
	var flags uint16
	for {
		r := tc.optReply()
		switch {
		case r.typ == repAck:
			return size, flags
		case r.typ == repInfo && binary.BigEndian.Uint16(r.data) == infoExport:
			size, flags = binary.BigEndian.Uint64(r.data[2:]), binary.BigEndian.Uint16(r.data[10:])
		case r.typ == repInfo:
		default:
			tc.t.Fatalf("GO answered %#x %q", r.typ, r.data)
		}
	}
}

func dial(t *testing.T, path string) *tclient {
	t.Helper()
	tc := dialRaw(t, path)
	tc.hello(clientFixedNewstyle | clientNoZeroes)
	tc.goExport("")
	return tc
}

func (tc *tclient) send(typ, flags uint16, cookie, off uint64, length uint32, payload []byte) {
	tc.t.Helper()
	b := binary.BigEndian.AppendUint32(nil, magicRequest)
	b = binary.BigEndian.AppendUint16(b, flags)
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint64(b, cookie)
	b = binary.BigEndian.AppendUint64(b, off)
	b = binary.BigEndian.AppendUint32(b, length)
	tc.write(append(b, payload...))
}

// reply reads a simple reply header: errno and cookie.
func (tc *tclient) reply() (uint32, uint64) {
	tc.t.Helper()
	var h [16]byte
	tc.read(h[:])
	if m := binary.BigEndian.Uint32(h[:]); m != magicSimpleRepl {
		tc.t.Fatalf("reply magic %#x", m)
	}
	return binary.BigEndian.Uint32(h[4:]), binary.BigEndian.Uint64(h[8:])
}

// do sends one request and waits for its reply; for READ it returns the data.
func (tc *tclient) do(typ, flags uint16, off uint64, length uint32, payload []byte) (uint32, []byte) {
	tc.t.Helper()
	tc.send(typ, flags, 77, off, length, payload)
	errno, cookie := tc.reply()
	if cookie != 77 {
		tc.t.Fatalf("cookie %d, want 77", cookie)
	}
	if typ != cmdRead || errno != 0 {
		return errno, nil
	}
	data := make([]byte, length)
	tc.read(data)
	return 0, data
}

// closed reports whether the server closed the connection.
func (tc *tclient) closed() bool {
	tc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := tc.c.Read(make([]byte, 1))
	var ne net.Error
	// EOF, or a reset when the server closed with our bytes unread.
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

func TestHandshakeGo(t *testing.T) {
	_, path := startServer(t, NewMemBackend(1<<20), Options{Name: "data", Description: "the datastore"})
	tc := dialRaw(t, path)
	tc.hello(clientFixedNewstyle)
	tc.option(optGo, infoData("data", infoBlockSize, infoName, infoDescription, 999))
	got := map[uint16][]byte{}
	for {
		r := tc.optReply()
		if r.option != optGo {
			t.Fatalf("reply for option %d", r.option)
		}
		if r.typ == repAck {
			if len(r.data) != 0 {
				t.Fatalf("ACK with data %q", r.data)
			}
			break
		}
		if r.typ != repInfo {
			t.Fatalf("reply type %#x", r.typ)
		}
		got[binary.BigEndian.Uint16(r.data)] = r.data[2:]
	}
	exp := got[infoExport]
	if len(exp) != 10 || binary.BigEndian.Uint64(exp) != 1<<20 {
		t.Fatalf("NBD_INFO_EXPORT % x", exp)
	}
	want := uint16(FlagHasFlags | FlagSendFlush | FlagSendFUA | FlagSendTrim | FlagSendWriteZeroes | FlagCanMultiConn)
	if f := binary.BigEndian.Uint16(exp[8:]); f != want {
		t.Errorf("flags %#x, want %#x", f, want)
	}
	bs := got[infoBlockSize]
	if len(bs) != 12 || binary.BigEndian.Uint32(bs) != 1 || binary.BigEndian.Uint32(bs[4:]) != 4096 || binary.BigEndian.Uint32(bs[8:]) != 1<<25 {
		t.Errorf("NBD_INFO_BLOCK_SIZE % x", bs)
	}
	if string(got[infoName]) != "data" || string(got[infoDescription]) != "the datastore" {
		t.Errorf("name %q description %q", got[infoName], got[infoDescription])
	}
	// Transmission: no zero padding after the ACK, a request works at once.
	if errno, data := tc.do(cmdRead, 0, 0, 4, nil); errno != 0 || !bytes.Equal(data, make([]byte, 4)) {
		t.Fatalf("read after GO: errno %d data % x", errno, data)
	}
}

func TestHandshakeOptions(t *testing.T) {
	_, path := startServer(t, NewMemBackend(4096), Options{Name: "data"})
	tc := dialRaw(t, path)
	tc.hello(clientFixedNewstyle | clientNoZeroes)
	steps := []struct {
		name    string
		opt     uint32
		data    []byte
		replies []uint32
	}{
		{"unknown option", 4242, []byte("junk"), []uint32{repErrUnsup}},
		{"STARTTLS", optStartTLS, nil, []uint32{repErrUnsup}},
		{"STRUCTURED_REPLY", optStructuredReply, nil, []uint32{repErrUnsup}},
		{"LIST", optList, nil, []uint32{repServer, repAck}},
		{"LIST with data", optList, []byte{1}, []uint32{repErrInvalid}},
		{"INFO unknown export", optInfo, infoData("other"), []uint32{repErrUnknown}},
		{"INFO short", optInfo, []byte{0, 0, 0}, []uint32{repErrInvalid}},
		{"INFO name too long", optInfo, append(binary.BigEndian.AppendUint32(nil, 100), 0, 0), []uint32{repErrInvalid}},
		{"INFO odd info list", optInfo, append(infoData("", 3), 0), []uint32{repErrInvalid}},
		{"INFO", optInfo, infoData("data"), []uint32{repInfo, repAck}},
		{"oversized option", 4243, make([]byte, maxOptionLen+1), []uint32{repErrTooBig}},
	}
	for _, s := range steps {
		tc.option(s.opt, s.data)
		for _, want := range s.replies {
			r := tc.optReply()
			if r.typ != want || r.option != s.opt {
				t.Fatalf("%s: reply %#x for option %d, want %#x", s.name, r.typ, r.option, want)
			}
			if r.typ == repServer && string(r.data[4:]) != "data" {
				t.Fatalf("%s: NBD_REP_SERVER %q", s.name, r.data)
			}
		}
	}
	// Still haggling after all of that: ABORT is acknowledged and closes.
	tc.option(optAbort, nil)
	if r := tc.optReply(); r.typ != repAck {
		t.Fatalf("ABORT answered %#x", r.typ)
	}
	if !tc.closed() {
		t.Fatal("connection open after ABORT")
	}
}

func TestHandshakeExportName(t *testing.T) {
	_, path := startServer(t, NewMemBackend(8192), Options{})
	for _, noZeroes := range []bool{false, true} {
		tc := dialRaw(t, path)
		cf := uint32(clientFixedNewstyle)
		if noZeroes {
			cf |= clientNoZeroes
		}
		tc.hello(cf)
		tc.option(optExportName, nil)
		b := make([]byte, 10)
		tc.read(b)
		if binary.BigEndian.Uint64(b) != 8192 {
			t.Fatalf("size % x", b)
		}
		if !noZeroes {
			z := make([]byte, exportNameZeroesLen)
			tc.read(z)
			if !bytes.Equal(z, make([]byte, exportNameZeroesLen)) {
				t.Fatal("padding not zero")
			}
		}
		if errno, _ := tc.do(cmdFlush, 0, 0, 0, nil); errno != 0 {
			t.Fatalf("no-zeroes %v: flush errno %d", noZeroes, errno)
		}
	}
	tc := dialRaw(t, path)
	tc.hello(clientFixedNewstyle)
	tc.option(optExportName, []byte("nope"))
	if !tc.closed() {
		t.Fatal("unknown export via EXPORT_NAME: connection still open")
	}
}

func TestHandshakeBadClientFlags(t *testing.T) {
	_, path := startServer(t, NewMemBackend(4096), Options{})
	tc := dialRaw(t, path)
	tc.hello(clientFixedNewstyle | 1<<5)
	if !tc.closed() {
		t.Fatal("unknown client flag: connection still open")
	}
}

func TestValidation(t *testing.T) {
	const size = 1 << 20
	_, rw := startServer(t, NewMemBackend(size), Options{})
	_, ro := startServer(t, NewMemBackend(size), Options{ReadOnly: true})
	_, aligned := startServer(t, NewMemBackend(size), Options{MinBlock: 512})
	tests := []struct {
		name   string
		path   string
		typ    uint16
		flags  uint16
		off    uint64
		length uint32
		want   uint32
	}{
		{"read at end", rw, cmdRead, 0, size - 512, 512, 0},
		{"read past end", rw, cmdRead, 0, size - 512, 513, errInval},
		{"read offset past end", rw, cmdRead, 0, size + 1, 0, errInval},
		{"read offset wraps", rw, cmdRead, 0, 1<<64 - 1, 2, errInval},
		{"read over max payload", rw, cmdRead, 0, 0, 1<<25 + 1, errInval},
		{"read with NO_HOLE", rw, cmdRead, cmdFlagNoHole, 0, 512, errInval},
		{"read with DF (not advertised)", rw, cmdRead, cmdFlagDF, 0, 512, errInval},
		{"read with FUA (accepted)", rw, cmdRead, cmdFlagFUA, 0, 512, 0},
		{"write past end", rw, cmdWrite, 0, size - 1, 2, errNoSpc},
		{"write offset wraps", rw, cmdWrite, 0, 1<<64 - 1, 2, errNoSpc},
		{"zeroes past end", rw, cmdWriteZeroes, 0, size, 1, errNoSpc},
		{"zeroes with FAST_ZERO", rw, cmdWriteZeroes, cmdFlagFastZero, 0, 512, errInval},
		{"zeroes with NO_HOLE", rw, cmdWriteZeroes, cmdFlagNoHole | cmdFlagFUA, 0, 512, 0},
		{"trim past end", rw, cmdTrim, 0, size, 4096, errInval},
		{"trim", rw, cmdTrim, 0, 0, 4096, 0},
		{"flush with offset", rw, cmdFlush, 0, 512, 0, errInval},
		{"flush with length", rw, cmdFlush, 0, 0, 512, errInval},
		{"cache (not advertised)", rw, cmdCache, 0, 0, 512, errInval},
		{"block status (not negotiated)", rw, cmdBlockStatus, 0, 0, 512, errInval},
		{"unknown command", rw, 99, 0, 0, 0, errInval},
		{"read-only write", ro, cmdWrite, 0, 0, 512, errPerm},
		{"read-only trim", ro, cmdTrim, 0, 0, 512, errPerm},
		{"read-only zeroes", ro, cmdWriteZeroes, 0, 0, 512, errPerm},
		{"read-only read", ro, cmdRead, 0, 0, 512, 0},
		{"read-only flush", ro, cmdFlush, 0, 0, 0, 0},
		{"misaligned read offset", aligned, cmdRead, 0, 100, 512, errInval},
		{"misaligned write length", aligned, cmdWrite, 0, 0, 100, errInval},
		{"misaligned trim", aligned, cmdTrim, 0, 512, 1000, errInval},
		{"aligned write", aligned, cmdWrite, 0, 512, 1024, 0},
	}
	conns := map[string]*tclient{rw: dial(t, rw), ro: dial(t, ro), aligned: dial(t, aligned)}
	for _, tt := range tests {
		var payload []byte
		if tt.typ == cmdWrite {
			payload = make([]byte, tt.length)
		}
		errno, _ := conns[tt.path].do(tt.typ, tt.flags, tt.off, tt.length, payload)
		if errno != tt.want {
			t.Errorf("%s: errno %d, want %d", tt.name, errno, tt.want)
		}
	}
	// The read-only export says so.
	tc := dialRaw(t, ro)
	tc.hello(clientFixedNewstyle)
	if _, f := tc.goExport(""); f&FlagReadOnly == 0 || f&(FlagSendTrim|FlagSendWriteZeroes) != 0 {
		t.Errorf("read-only flags %#x", f)
	}
}

func TestProtocolViolationsClose(t *testing.T) {
	_, path := startServer(t, NewMemBackend(4096), Options{})
	tc := dial(t, path)
	tc.write(make([]byte, requestHeaderLen)) // magic 0
	if !tc.closed() {
		t.Fatal("bad request magic: connection still open")
	}
	tc = dial(t, path)
	tc.send(cmdWrite, 0, 1, 0, 1<<25+1, nil)
	if !tc.closed() {
		t.Fatal("write payload over 32 MiB: connection still open")
	}
}

func TestDataOperations(t *testing.T) {
	m := NewMemBackend(1 << 20)
	_, path := startServer(t, m, Options{})
	tc := dial(t, path)
	pat := bytes.Repeat([]byte{0xab, 0xcd, 0xef}, 10000)
	if errno, _ := tc.do(cmdWrite, 0, 1000, uint32(len(pat)), pat); errno != 0 {
		t.Fatalf("write errno %d", errno)
	}
	if _, got := tc.do(cmdRead, 0, 1000, uint32(len(pat)), nil); !bytes.Equal(got, pat) {
		t.Fatal("read back differs")
	}
	f0 := m.Flushes()
	if errno, _ := tc.do(cmdWrite, cmdFlagFUA, 0, 3, []byte{1, 2, 3}); errno != 0 || m.Flushes() != f0+1 {
		t.Fatalf("FUA write: errno %d, flushes %d -> %d", errno, f0, m.Flushes())
	}
	if errno, _ := tc.do(cmdFlush, 0, 0, 0, nil); errno != 0 || m.Flushes() != f0+2 {
		t.Fatalf("flush: errno %d, flushes %d", errno, m.Flushes())
	}
	if errno, _ := tc.do(cmdWriteZeroes, 0, 2000, 1000, nil); errno != 0 {
		t.Fatalf("zeroes errno %d", errno)
	}
	if errno, _ := tc.do(cmdTrim, 0, 10000, 4096, nil); errno != 0 {
		t.Fatalf("trim errno %d", errno)
	}
	want := make([]byte, 1<<20)
	copy(want, []byte{1, 2, 3})
	copy(want[1000:], pat)
	clear(want[2000:3000])
	clear(want[10000 : 10000+4096]) // MemBackend zeroes on trim
	if !bytes.Equal(m.Bytes(), want) {
		t.Fatal("backend contents differ from the model")
	}
	if _, got := tc.do(cmdRead, 0, 0, 1<<20, nil); !bytes.Equal(got, want) {
		t.Fatal("read of the whole export differs")
	}
}

// gate is a backend whose reads at gatedOff wait until released.
type gate struct {
	*MemBackend
	gatedOff int64
	entered  chan struct{}
	release  chan struct{}
}

func newGate(size int, off int64) *gate {
	return &gate{MemBackend: NewMemBackend(size), gatedOff: off, entered: make(chan struct{}, 1), release: make(chan struct{})}
}

func (g *gate) ReadAt(p []byte, off int64) (int, error) {
	if off == g.gatedOff {
		g.entered <- struct{}{}
		<-g.release
	}
	return g.MemBackend.ReadAt(p, off)
}

func TestRepliesOutOfOrder(t *testing.T) {
	g := newGate(1<<16, 4096)
	_, path := startServer(t, g, Options{})
	tc := dial(t, path)
	tc.send(cmdRead, 0, 1, 4096, 8, nil)
	<-g.entered
	tc.send(cmdWrite, 0, 2, 0, 3, []byte{9, 9, 9})
	if errno, cookie := tc.reply(); errno != 0 || cookie != 2 {
		t.Fatalf("first reply: errno %d cookie %d, want the write (2) while the read waits", errno, cookie)
	}
	close(g.release)
	if errno, cookie := tc.reply(); errno != 0 || cookie != 1 {
		t.Fatalf("second reply: errno %d cookie %d", errno, cookie)
	}
	tc.read(make([]byte, 8))
}

func TestDiscAnswersInFlight(t *testing.T) {
	g := newGate(1<<16, 0)
	_, path := startServer(t, g, Options{})
	tc := dial(t, path)
	tc.send(cmdRead, 0, 5, 0, 16, nil)
	<-g.entered
	tc.send(cmdDisc, 0, 6, 0, 0, nil)
	close(g.release)
	if errno, cookie := tc.reply(); errno != 0 || cookie != 5 {
		t.Fatalf("reply errno %d cookie %d", errno, cookie)
	}
	tc.read(make([]byte, 16))
	if !tc.closed() {
		t.Fatal("connection open after DISC")
	}
}

// connPair returns two connected Unix stream sockets (buffered, unlike
// net.Pipe).
func connPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	dir, err := os.MkdirTemp("", "pgnbd")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	l, err := net.Listen("unix", filepath.Join(dir, "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	client, err = net.Dial("unix", filepath.Join(dir, "s"))
	if err != nil {
		t.Fatal(err)
	}
	server, err = l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	client.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// waitDraining waits until Shutdown has marked every connection.
func waitDraining(s *Server) {
	for {
		s.mu.Lock()
		all := true
		for c := range s.conns {
			all = all && c.isClosing()
		}
		s.mu.Unlock()
		if all {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

func TestShutdownDrains(t *testing.T) {
	g := newGate(1<<16, 0)
	s, err := NewServer(g, Options{})
	if err != nil {
		t.Fatal(err)
	}
	a, b := connPair(t)
	served := make(chan error, 1)
	go func() { served <- s.ServeConn(b) }()
	tc := &tclient{t: t, c: a}
	tc.hello(clientFixedNewstyle | clientNoZeroes)
	tc.goExport("")
	tc.send(cmdRead, 0, 1, 0, 16, nil)
	<-g.entered
	down := make(chan error, 1)
	go func() { down <- s.Shutdown(context.Background()) }()
	waitDraining(s)
	// New requests are answered ESHUTDOWN while the read is in flight.
	tc.send(cmdWrite, 0, 2, 100, 3, []byte{1, 2, 3})
	if errno, cookie := tc.reply(); cookie != 2 || errno != errShutdown {
		t.Fatalf("request during shutdown: errno %d cookie %d, want ESHUTDOWN", errno, cookie)
	}
	select {
	case err := <-down:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	default:
	}
	close(g.release)
	if errno, cookie := tc.reply(); errno != 0 || cookie != 1 {
		t.Fatalf("in-flight read: errno %d cookie %d", errno, cookie)
	}
	tc.read(make([]byte, 16))
	if err := <-down; err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	if !tc.closed() {
		t.Fatal("connection open after shutdown")
	}
	if !bytes.Equal(g.Bytes()[100:103], make([]byte, 3)) {
		t.Fatal("the refused write reached the backend")
	}
}

// A kernel connection is never answered ESHUTDOWN: what it sent after
// the shutdown began stays unanswered (the kernel resends it elsewhere).
func TestShutdownKernelConnection(t *testing.T) {
	g := newGate(1<<16, 0)
	s, err := NewServer(g, Options{})
	if err != nil {
		t.Fatal(err)
	}
	a, b := connPair(t)
	served := make(chan error, 1)
	go func() { served <- s.ServeTransmission(b) }()
	tc := &tclient{t: t, c: a}
	tc.send(cmdRead, 0, 1, 0, 16, nil)
	<-g.entered
	down := make(chan error, 1)
	go func() { down <- s.Shutdown(context.Background()) }()
	waitDraining(s)
	tc.send(cmdWrite, 0, 2, 100, 3, []byte{1, 2, 3})
	close(g.release)
	if errno, cookie := tc.reply(); errno != 0 || cookie != 1 {
		t.Fatalf("in-flight read: errno %d cookie %d", errno, cookie)
	}
	tc.read(make([]byte, 16))
	if !tc.closed() {
		t.Fatal("connection open (or a reply sent) after the in-flight request")
	}
	if err := <-down; err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(g.Bytes()[100:103], make([]byte, 3)) {
		t.Fatal("the unanswered write reached the backend")
	}
}

func TestShutdownClosesHaggling(t *testing.T) {
	s, path := startServer(t, NewMemBackend(4096), Options{})
	tc := dialRaw(t, path)
	tc.hello(clientFixedNewstyle)
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !tc.closed() {
		t.Fatal("haggling connection open after shutdown")
	}
}

func TestConcurrentClients(t *testing.T) {
	m := NewMemBackend(1 << 20)
	_, path := startServer(t, m, Options{MaxInFlight: 4})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			tc := dial(t, path)
			blk := bytes.Repeat([]byte{byte(i + 1)}, 4096)
			// Pipeline 16 writes, then collect the replies in any order.
			for j := range 16 {
				tc.send(cmdWrite, 0, uint64(j), uint64((i*16+j)*4096), 4096, blk)
			}
			seen := map[uint64]bool{}
			for range 16 {
				errno, cookie := tc.reply()
				if errno != 0 || seen[cookie] {
					t.Errorf("client %d: errno %d cookie %d", i, errno, cookie)
				}
				seen[cookie] = true
			}
		})
	}
	wg.Wait()
	data := m.Bytes()
	for i := range 8 {
		for j := range 16 {
			off := (i*16 + j) * 4096
			if !bytes.Equal(data[off:off+4096], bytes.Repeat([]byte{byte(i + 1)}, 4096)) {
				t.Fatalf("block %d of client %d differs", j, i)
			}
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	bad := []Options{
		{MinBlock: 3},
		{MinBlock: 1 << 17},
		{PreferredBlock: 256},
		{MinBlock: 8192, PreferredBlock: 4096},
		{MaxPayload: 1000},
		{MaxPayload: 1<<25 + 1},
		{MaxInFlight: -1},
	}
	for _, o := range bad {
		if _, err := NewServer(NewMemBackend(4096), o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

// A buffer put back and taken again costs no allocation (a request's
// payload and a read's data go through the pools).
func TestBufferPoolNoAlloc(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop buffers")
	}
	putBuf(getBuf(4096))
	putBuf(getBuf(1 << 20))
	if n := testing.AllocsPerRun(100, func() {
		putBuf(getBuf(4096))
		putBuf(getBuf(1 << 20))
	}); n != 0 {
		t.Fatalf("%v allocations per get and put", n)
	}
}

// workerGoroutines counts the goroutines running a connection's worker.
func workerGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return bytes.Count(buf, []byte("nbd.(*conn).worker("))
}

// A client at queue depth 1 is served by the goroutine that reads its
// requests: no hand-over to a worker (a wake-up and the scheduler's
// spinning per request).
func TestDepthOneServedByReader(t *testing.T) {
	_, path := startServer(t, NewMemBackend(1<<20), Options{})
	tc := dial(t, path)
	before := workerGoroutines()
	for i := range 50 {
		if errno, _ := tc.do(cmdWrite, 0, uint64(i)*4096, 4096, make([]byte, 4096)); errno != 0 {
			t.Fatalf("write %d: errno %d", i, errno)
		}
	}
	if errno, _ := tc.do(cmdRead, 0, 0, 4096, nil); errno != 0 {
		t.Fatalf("read: errno %d", errno)
	}
	if n := workerGoroutines() - before; n != 0 {
		t.Fatalf("%d worker goroutines for a client at queue depth 1", n)
	}
}

// A request run by the reading goroutine that blocks does not hold back
// the ones behind it: another goroutine takes over the reading.
func TestBlockedRequestRescued(t *testing.T) {
	g := newGate(1<<16, 0)
	_, path := startServer(t, g, Options{})
	tc := dial(t, path)
	tc.send(cmdRead, 0, 1, 0, 8, nil)
	<-g.entered
	for i := range 3 {
		tc.send(cmdWrite, 0, uint64(10+i), 4096, 3, []byte{1, 2, 3})
		if errno, cookie := tc.reply(); errno != 0 || cookie != uint64(10+i) {
			t.Fatalf("write behind a blocked read: errno %d cookie %d", errno, cookie)
		}
	}
	close(g.release)
	if errno, cookie := tc.reply(); errno != 0 || cookie != 1 {
		t.Fatalf("blocked read: errno %d cookie %d", errno, cookie)
	}
	tc.read(make([]byte, 8))
	if errno, _ := tc.do(cmdWrite, 0, 8192, 3, []byte{4, 5, 6}); errno != 0 {
		t.Fatalf("write after the rescue: errno %d", errno)
	}
}
