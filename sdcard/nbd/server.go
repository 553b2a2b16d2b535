package nbd

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/bits"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("nbd: server closed")

// Options configure an export. The zero value serves a writable export
// named "" with the protocol's default size constraints.
type Options struct {
	// Name is the export's name; the default export "" always reaches it too.
	Name string
	// Description is sent as NBD_INFO_DESCRIPTION when asked for.
	Description string
	// ReadOnly answers every write, trim and zero with EPERM.
	ReadOnly bool
	// MinBlock, PreferredBlock and MaxPayload are the size constraints
	// (NBD_INFO_BLOCK_SIZE); defaults 1, 4096 and 32 MiB.
	MinBlock, PreferredBlock, MaxPayload uint32
	// MaxInFlight bounds the requests handled at once per connection
	// (default 32); the reader stops reading while that many run.
	MaxInFlight int
	// HandshakeTimeout bounds the option haggling (default 10s).
	HandshakeTimeout time.Duration
	// Logger receives connection events; nil discards them.
	Logger *slog.Logger
}

func (o *Options) validate() error {
	if o.MinBlock == 0 {
		o.MinBlock = 1
	}
	if o.PreferredBlock == 0 {
		o.PreferredBlock = max(4096, o.MinBlock)
	}
	if o.MaxPayload == 0 {
		o.MaxPayload = maxDoSLength
	}
	if o.MaxInFlight == 0 {
		o.MaxInFlight = 32
	}
	if o.HandshakeTimeout == 0 {
		o.HandshakeTimeout = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case bits.OnesCount32(o.MinBlock) != 1 || o.MinBlock > 1<<16:
		return fmt.Errorf("nbd: minimum block size %d is not a power of two up to 65536", o.MinBlock)
	case bits.OnesCount32(o.PreferredBlock) != 1 || o.PreferredBlock < max(o.MinBlock, 512):
		return fmt.Errorf("nbd: preferred block size %d is not a power of two of at least max(minimum, 512)", o.PreferredBlock)
	case o.MaxPayload < o.PreferredBlock || o.MaxPayload > maxDoSLength:
		return fmt.Errorf("nbd: maximum payload %d is not between the preferred block size and 32 MiB", o.MaxPayload)
	case len(o.Name) > maxNameLen || len(o.Description) > maxNameLen:
		return errors.New("nbd: export name or description over 4096 bytes")
	case o.MaxInFlight < 1:
		return fmt.Errorf("nbd: MaxInFlight %d is below 1", o.MaxInFlight)
	}
	return nil
}

// Server serves one export over any number of connections.
type Server struct {
	b    Backend
	opt  Options
	size uint64
	log  *slog.Logger

	stats stats

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	shutdown  bool
	wg        sync.WaitGroup // one per connection and per Serve loop
}

// NewServer returns a server for b. The backend's size is read once.
func NewServer(b Backend, o Options) (*Server, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	size := b.Size()
	if size < 0 {
		return nil, fmt.Errorf("nbd: backend size %d", size)
	}
	if uint64(size)%uint64(o.MinBlock) != 0 {
		o.Logger.Warn("nbd: export size is not a multiple of the minimum block size; its tail is unreachable",
			"size", size, "min-block", o.MinBlock)
	}
	return &Server{b: b, opt: o, size: uint64(size), log: o.Logger,
		listeners: map[net.Listener]struct{}{}, conns: map[*conn]struct{}{}}, nil
}

// Flags returns the transmission flags of the export, as sent in the
// handshake; the kernel attach needs them (NBD_ATTR_SERVER_FLAGS).
func (s *Server) Flags() uint16 {
	f := uint16(FlagHasFlags | FlagSendFlush | FlagSendFUA | FlagCanMultiConn)
	if s.opt.ReadOnly {
		return f | FlagReadOnly
	}
	return f | FlagSendTrim | FlagSendWriteZeroes
}

// Size returns the export size in bytes.
func (s *Server) Size() uint64 { return s.size }

// ListenUnix listens on a Unix socket at path (replacing a stale socket
// file), mode 0600.
func ListenUnix(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		_ = os.Remove(path)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("nbd: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		return nil, errors.Join(fmt.Errorf("nbd: %w", err), l.Close())
	}
	return l, nil
}

// Serve accepts connections on l and serves each (handshake, then
// transmission) until Shutdown, when it returns ErrServerClosed.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.shutdown {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	for {
		c, err := l.Accept()
		if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ECONNABORTED) {
			// Out of descriptors or a client gone before accept: the
			// listener is fine, the export stays up.
			s.log.Warn("nbd: accept", "reason", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if err != nil {
			s.mu.Lock()
			down := s.shutdown
			delete(s.listeners, l)
			s.mu.Unlock()
			if down {
				return ErrServerClosed
			}
			return fmt.Errorf("nbd: accept: %w", err)
		}
		cn := s.track(c, true)
		if cn == nil {
			continue
		}
		go func() {
			defer s.wg.Done()
			if err := cn.serve(); err != nil {
				s.log.Warn("nbd: connection ended", "reason", err)
			}
		}()
	}
}

// ServeConn runs the handshake and the transmission phase on c and returns
// when the client disconnects or the server shuts down. It closes c.
func (s *Server) ServeConn(c net.Conn) error {
	cn := s.track(c, true)
	if cn == nil {
		return ErrServerClosed
	}
	defer s.wg.Done()
	return cn.serve()
}

// ServeTransmission serves c from the transmission phase on, with no
// handshake: the kernel's NBD client is handed the flags and size through
// netlink and speaks requests at once. It closes c.
func (s *Server) ServeTransmission(c net.Conn) error {
	cn := s.track(c, false)
	if cn == nil {
		return ErrServerClosed
	}
	cn.kernel = true
	defer s.wg.Done()
	return cn.serve()
}

func (s *Server) track(c net.Conn, handshake bool) *conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutdown {
		c.Close()
		return nil
	}
	cn := &conn{s: s, c: c, handshake: handshake, sem: make(chan struct{}, s.opt.MaxInFlight)}
	cn.idle = sync.NewCond(&cn.mu)
	s.conns[cn] = struct{}{}
	s.wg.Add(1)
	return cn
}

// Shutdown stops accepting, answers new requests with ESHUTDOWN, lets the
// requests in flight finish and closes every connection. If ctx ends
// first, the connections are closed at once and ctx's error returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shutdown = true
	for l := range s.listeners {
		l.Close()
	}
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.drain()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		for _, c := range conns {
			c.c.Close()
		}
		<-done
		return ctx.Err()
	}
}

func (s *Server) shuttingDown() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.shutdown
}

// conn is one client connection.
type conn struct {
	s   *Server
	c   net.Conn
	sem chan struct{}

	mu        sync.Mutex
	idle      *sync.Cond // signalled when inflight drops to 0
	handshake bool
	kernel    bool // served by ServeTransmission: no ESHUTDOWN replies
	closing   bool // shutdown: no new work, close when idle
	closed    bool
	inflight  int

	wmu  sync.Mutex // serialises replies
	bw   *bufio.Writer
	rhdr [simpleReplyLen]byte // the reply header being written, under wmu
	// replying counts the replies being written or waiting for wmu: the
	// last of them flushes, so replies finishing together share a write.
	replying atomic.Int32
}

// job is one request handed to a worker.
type job struct {
	req     request
	payload []byte
}

func (c *conn) serve() (err error) {
	defer func() {
		c.mu.Lock()
		for c.inflight > 0 {
			c.idle.Wait()
		}
		c.closeLocked()
		c.mu.Unlock()
		c.s.mu.Lock()
		delete(c.s.conns, c)
		c.s.mu.Unlock()
	}()
	br := bufio.NewReaderSize(c.c, 64<<10)
	c.bw = bufio.NewWriterSize(c.c, 64<<10)
	if c.handshake {
		ok, err := c.negotiate(br)
		if err != nil || !ok {
			return err
		}
		c.mu.Lock()
		c.handshake = false
		closing := c.closing
		c.mu.Unlock()
		if closing {
			return nil
		}
	}
	return c.transmit(br)
}

// drain starts a graceful close: a connection still haggling is closed at
// once, one in transmission when its last request in flight is answered.
func (c *conn) drain() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closing = true
	if c.handshake || c.inflight == 0 {
		c.closeLocked()
	} else if c.kernel {
		// Read no more: what the kernel sent and we did not answer, it
		// resends on the sockets a RECONFIGURE hands it, where an
		// ESHUTDOWN reply would fail the I/O.
		_ = c.c.SetReadDeadline(time.Now())
	}
}

func (c *conn) closeLocked() {
	if !c.closed {
		c.closed = true
		c.c.Close()
	}
}

// negotiate runs the fixed-newstyle handshake; ok is true when the
// client entered the transmission phase.
func (c *conn) negotiate(br *bufio.Reader) (ok bool, err error) {
	o := &c.s.opt
	if err := c.c.SetDeadline(time.Now().Add(o.HandshakeTimeout)); err != nil {
		return false, err
	}
	hello := binary.BigEndian.AppendUint64(nil, magicNBD)
	hello = binary.BigEndian.AppendUint64(hello, magicIHaveOpt)
	hello = binary.BigEndian.AppendUint16(hello, flagFixedNewstyle|flagNoZeroes)
	if _, err := c.c.Write(hello); err != nil {
		return false, err
	}
	var b [optionHeaderLen]byte
	if _, err := io.ReadFull(br, b[:4]); err != nil {
		return false, err
	}
	cflags := binary.BigEndian.Uint32(b[:4])
	if cflags&^(clientFixedNewstyle|clientNoZeroes) != 0 {
		return false, fmt.Errorf("%w: unknown client flags %#x", errProtocol, cflags)
	}
	noZeroes := cflags&clientNoZeroes != 0
	for {
		if _, err := io.ReadFull(br, b[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return false, nil // the client went away while haggling
			}
			return false, err
		}
		h, err := parseOptionHeader(b[:])
		if err != nil {
			return false, err
		}
		if h.length > maxOptionLen {
			if h.option == optExportName || h.length > 1<<20 {
				return false, fmt.Errorf("%w: option %d of %d bytes", errProtocol, h.option, h.length)
			}
			if _, err := io.CopyN(io.Discard, br, int64(h.length)); err != nil {
				return false, err
			}
			if err := c.optReply(h.option, repErrTooBig, "option data too long"); err != nil {
				return false, err
			}
			continue
		}
		data := make([]byte, h.length)
		if _, err := io.ReadFull(br, data); err != nil {
			return false, err
		}
		if c.s.shuttingDown() {
			return false, c.optReply(h.option, repErrShutdown, "server shutting down")
		}
		switch h.option {
		case optExportName:
			if !c.knownName(string(data)) {
				return false, fmt.Errorf("nbd: unknown export %q", data)
			}
			out := binary.BigEndian.AppendUint64(nil, c.s.size)
			out = binary.BigEndian.AppendUint16(out, c.s.Flags())
			if !noZeroes {
				out = append(out, make([]byte, exportNameZeroesLen)...)
			}
			if _, err := c.bw.Write(out); err != nil {
				return false, err
			}
			return true, c.enterTransmission()
		case optAbort:
			// The client may close without reading the ACK.
			_ = c.optReply(h.option, repAck, "")
			return false, nil
		case optList:
			if len(data) != 0 {
				err = c.optReply(h.option, repErrInvalid, "NBD_OPT_LIST takes no data")
				break
			}
			name := binary.BigEndian.AppendUint32(nil, uint32(len(o.Name)))
			c.bw.Write(appendOptionReply(nil, h.option, repServer, append(name, o.Name...)))
			err = c.optReply(h.option, repAck, "")
		case optInfo, optGo:
			var done bool
			done, err = c.info(h.option, data)
			if err == nil && done && h.option == optGo {
				return true, c.enterTransmission()
			}
		default:
			err = c.optReply(h.option, repErrUnsup, "option not supported")
		}
		if err != nil {
			return false, err
		}
	}
}

func (c *conn) knownName(name string) bool { return name == "" || name == c.s.opt.Name }

// info answers NBD_OPT_INFO and NBD_OPT_GO; ok means it ended with ACK.
func (c *conn) info(option uint32, data []byte) (ok bool, err error) {
	r, err := parseInfoRequest(data)
	if err != nil {
		return false, c.optReply(option, repErrInvalid, err.Error())
	}
	if !c.knownName(r.name) {
		return false, c.optReply(option, repErrUnknown, "no such export")
	}
	o := &c.s.opt
	exp := binary.BigEndian.AppendUint16(nil, infoExport)
	exp = binary.BigEndian.AppendUint64(exp, c.s.size)
	exp = binary.BigEndian.AppendUint16(exp, c.s.Flags())
	out := appendOptionReply(nil, option, repInfo, exp)
	if r.wants(infoName) {
		out = appendOptionReply(out, option, repInfo, append(binary.BigEndian.AppendUint16(nil, infoName), o.Name...))
	}
	if r.wants(infoDescription) && o.Description != "" {
		out = appendOptionReply(out, option, repInfo, append(binary.BigEndian.AppendUint16(nil, infoDescription), o.Description...))
	}
	if r.wants(infoBlockSize) || o.MinBlock > 1 {
		bs := binary.BigEndian.AppendUint16(nil, infoBlockSize)
		bs = binary.BigEndian.AppendUint32(bs, o.MinBlock)
		bs = binary.BigEndian.AppendUint32(bs, o.PreferredBlock)
		bs = binary.BigEndian.AppendUint32(bs, o.MaxPayload)
		out = appendOptionReply(out, option, repInfo, bs)
	}
	out = appendOptionReply(out, option, repAck, nil)
	if _, err := c.bw.Write(out); err != nil {
		return false, err
	}
	return true, c.bw.Flush()
}

func (c *conn) optReply(option, typ uint32, msg string) error {
	if _, err := c.bw.Write(appendOptionReply(nil, option, typ, []byte(msg))); err != nil {
		return err
	}
	return c.bw.Flush()
}

func (c *conn) enterTransmission() error {
	if err := c.bw.Flush(); err != nil {
		return err
	}
	return c.c.SetDeadline(time.Time{})
}

// transmit reads requests and runs them; the replies go out in the order
// the requests finish. A request that finds nothing else in flight and
// nothing more buffered (a client at queue depth 1, or the first of a
// burst) runs in the reading goroutine itself: handing it to another
// goroutine costs a wake-up and the scheduler's spinning, about 25 µs of
// a 4 KiB write's 90 at queue depth 1 here, where nbdkit's thread reads
// and serves it alike. Should it take longer than inlineWait, another
// goroutine takes over the reading (rescue), so that a slow or blocked
// request never holds back the ones behind it for longer. The other
// requests go to workers (at most MaxInFlight, started as needed) that
// stay for the connection's life: a goroutine per request would grow a
// fresh stack through the backend's calls every time.
func (c *conn) transmit(br *bufio.Reader) error {
	l := &reader{br: br, work: make(chan job), done: make(chan error, 1)}
	l.rescue = time.AfterFunc(time.Hour, func() {
		if v := l.state.Load(); v > 0 && l.state.CompareAndSwap(v, readerRescued) {
			go c.read(l)
		}
	})
	l.rescue.Stop()
	c.read(l)
	return <-l.done
}

// inlineWait is how long a request run by the reading goroutine may take
// before another goroutine takes over the reading.
const inlineWait = time.Millisecond

// reader is the state of a connection's request reading, held by one
// goroutine at a time (the one that runs read).
type reader struct {
	br      *bufio.Reader
	hdr     [requestHeaderLen]byte
	work    chan job
	workers int
	done    chan error // the reading's end: nil (EOF, DISC, shutdown) or why
	// state: readerReading; readerRescued; or, while the holder runs a
	// request itself, the number of that run (from 1; the rescue timer,
	// stale or not, may hand the reading to a new goroutine then, and
	// the holder goes on reading only if its own run was not rescued).
	state  atomic.Int64
	runs   int64
	rescue *time.Timer
}

const (
	readerReading = 0
	readerRescued = -1
)

// read reads and dispatches requests until the reading ends (it sends the
// result to l.done) or is taken over by another goroutine while this one
// ran a request inline.
func (c *conn) read(l *reader) {
	l.state.Store(readerReading)
	if err := c.readLoop(l); err != errHandedOver {
		l.rescue.Stop()
		close(l.work)
		l.done <- err
	}
}

var errHandedOver = errors.New("nbd: reading handed over")

func (c *conn) readLoop(l *reader) error {
	br := l.br
	for {
		if _, err := io.ReadFull(br, l.hdr[:]); err != nil {
			if errors.Is(err, io.EOF) || c.isClosing() {
				return nil
			}
			return err
		}
		req, err := parseRequest(l.hdr[:])
		if err != nil {
			return err
		}
		if req.typ == cmdDisc {
			return nil // serve's epilogue answers what is in flight, then closes
		}
		var payload []byte
		if req.typ == cmdWrite {
			if req.length > maxDoSLength {
				return fmt.Errorf("%w: write payload of %d bytes", errProtocol, req.length)
			}
			payload = getBuf(int(req.length))
			if _, err := io.ReadFull(br, payload); err != nil {
				putBuf(payload)
				return err
			}
		}
		errno := c.s.check(req)
		c.mu.Lock()
		if c.closing {
			if c.kernel {
				c.mu.Unlock()
				putBuf(payload)
				return nil // unanswered: the kernel resends it
			}
			errno = errShutdown
		}
		if errno != 0 {
			c.mu.Unlock()
			putBuf(payload)
			c.s.count(req, errno)
			c.reply(req.cookie, errno, nil)
			continue
		}
		c.inflight++
		alone := c.inflight == 1 && br.Buffered() == 0
		c.mu.Unlock()
		c.sem <- struct{}{}
		if alone {
			l.runs++
			run := l.runs // l is the rescuer's once rescued
			l.state.Store(run)
			l.rescue.Reset(inlineWait)
			c.handle(req, payload)
			if !l.state.CompareAndSwap(run, readerReading) {
				return errHandedOver // a rescuer reads on
			}
			l.rescue.Stop()
			continue
		}
		j := job{req, payload}
		if l.workers == cap(c.sem) {
			l.work <- j // one is idle, or about to be: the semaphore had room
			continue
		}
		select {
		case l.work <- j:
		default:
			l.workers++
			go c.worker(l.work, j)
		}
	}
}

// worker handles j, then the jobs it receives until the reader ends.
func (c *conn) worker(work <-chan job, j job) {
	for ok := true; ok; j, ok = <-work {
		c.handle(j.req, j.payload)
	}
}

func (c *conn) isClosing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing
}

func (c *conn) handle(req request, payload []byte) {
	errno, data := c.s.do(req, payload)
	putBuf(payload)
	c.reply(req.cookie, errno, data)
	putBuf(data)
	<-c.sem
	c.mu.Lock()
	c.inflight--
	if c.inflight == 0 {
		c.idle.Broadcast()
		if c.closing {
			c.closeLocked()
		}
	}
	c.mu.Unlock()
}

// reply sends a simple reply; a failed write closes the connection, which
// ends the reader.
func (c *conn) reply(cookie uint64, errno uint32, data []byte) {
	c.replying.Add(1)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.bw.Write(appendSimpleReply(c.rhdr[:0], errno, cookie))
	if err == nil && errno == 0 {
		_, err = c.bw.Write(data)
	}
	// A reply waiting for wmu flushes this one with its own.
	if c.replying.Add(-1) == 0 && err == nil {
		err = c.bw.Flush()
	}
	if err != nil {
		c.mu.Lock()
		c.closeLocked()
		c.mu.Unlock()
	}
}

// check validates a request against the export and returns the errno to
// answer it with, or 0.
func (s *Server) check(r request) uint32 {
	allowed := uint16(cmdFlagFUA)
	if r.typ == cmdWriteZeroes {
		allowed |= cmdFlagNoHole
	}
	if r.flags&^allowed != 0 {
		return errInval
	}
	o := &s.opt
	off, n := r.offset, uint64(r.length)
	beyond := off > s.size || n > s.size-off
	aligned := off%uint64(o.MinBlock) == 0 && n%uint64(o.MinBlock) == 0
	switch r.typ {
	case cmdRead:
		switch {
		case n > uint64(o.MaxPayload), beyond, !aligned:
			return errInval
		}
	case cmdWrite, cmdWriteZeroes:
		switch {
		case o.ReadOnly:
			return errPerm
		case r.typ == cmdWrite && n > uint64(o.MaxPayload):
			return errInval
		case beyond:
			return errNoSpc
		case !aligned:
			return errInval
		}
	case cmdTrim:
		switch {
		case o.ReadOnly:
			return errPerm
		case beyond, !aligned:
			return errInval
		}
	case cmdFlush:
		if off != 0 || n != 0 {
			return errInval
		}
	default:
		return errInval // CACHE, BLOCK_STATUS, RESIZE and unknown: not advertised
	}
	return 0
}

// Stats counts the requests a server has answered since it started.
type Stats struct {
	Read, Write, Flush, Trim, WriteZeroes uint64
	FUA                                   uint64 // requests with NBD_CMD_FLAG_FUA
	Errors                                uint64 // requests answered with an error
}

type stats struct {
	read, write, flush, trim, zeroes, fua, errors atomic.Uint64
}

// Stats returns the request counts.
func (s *Server) Stats() Stats {
	return Stats{Read: s.stats.read.Load(), Write: s.stats.write.Load(), Flush: s.stats.flush.Load(),
		Trim: s.stats.trim.Load(), WriteZeroes: s.stats.zeroes.Load(), FUA: s.stats.fua.Load(),
		Errors: s.stats.errors.Load()}
}

func (s *Server) count(r request, errno uint32) {
	if errno != 0 {
		s.stats.errors.Add(1)
		return
	}
	switch r.typ {
	case cmdRead:
		s.stats.read.Add(1)
	case cmdWrite:
		s.stats.write.Add(1)
	case cmdFlush:
		s.stats.flush.Add(1)
	case cmdTrim:
		s.stats.trim.Add(1)
	case cmdWriteZeroes:
		s.stats.zeroes.Add(1)
	}
	if r.flags&cmdFlagFUA != 0 {
		s.stats.fua.Add(1)
	}
}

// do runs a checked request against the backend.
func (s *Server) do(r request, payload []byte) (errno uint32, data []byte) {
	defer func() { s.count(r, errno) }()
	off, n := int64(r.offset), int64(r.length)
	var err error
	switch r.typ {
	case cmdRead:
		data = getBuf(int(n))
		var got int
		got, err = s.b.ReadAt(data, off)
		if errors.Is(err, io.EOF) && got == len(data) {
			err = nil
		}
		if err != nil {
			putBuf(data)
			data = nil
		}
	case cmdWrite:
		_, err = s.b.WriteAt(payload, off)
	case cmdFlush:
		err = s.b.Flush()
	case cmdTrim:
		if n > 0 {
			err = s.b.Trim(off, n)
		}
	case cmdWriteZeroes:
		if n > 0 {
			err = s.b.Zero(off, n, r.flags&cmdFlagNoHole != 0)
		}
	}
	if err == nil && r.flags&cmdFlagFUA != 0 && r.typ != cmdRead && r.typ != cmdFlush {
		err = s.b.Flush()
	}
	if err != nil {
		s.log.Warn("nbd: backend error", "cmd", r.typ, "offset", off, "length", n, "reason", err)
		return errnoOf(err), nil
	}
	return 0, data
}

// errnoOf maps a backend error to the protocol's errno values.
func errnoOf(err error) uint32 {
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT), errors.Is(err, syscall.EFBIG):
		return errNoSpc
	case errors.Is(err, syscall.EPERM), errors.Is(err, syscall.EROFS), errors.Is(err, syscall.EACCES):
		return errPerm
	case errors.Is(err, syscall.ENOMEM):
		return errNoMem
	case errors.Is(err, syscall.EINVAL):
		return errInval
	}
	return errIO
}

// Buffers in power-of-two classes from 4 KiB to 1 MiB are reused.
const (
	minPoolShift = 12
	maxPoolShift = 20
)

var pools [maxPoolShift - minPoolShift + 1]sync.Pool

// holders keeps the *[]byte that carry buffers through the pools, so that
// putting a buffer back allocates nothing.
var holders sync.Pool

func poolIndex(n int) int {
	if n <= 1<<minPoolShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minPoolShift
}

func getBuf(n int) []byte {
	if n > 1<<maxPoolShift {
		return make([]byte, n)
	}
	i := poolIndex(n)
	if p, ok := pools[i].Get().(*[]byte); ok {
		b := (*p)[:n]
		*p = nil
		holders.Put(p)
		return b
	}
	return make([]byte, n, 1<<(i+minPoolShift))
}

func putBuf(b []byte) {
	c := cap(b)
	if c == 0 || c > 1<<maxPoolShift || bits.OnesCount(uint(c)) != 1 || c < 1<<minPoolShift {
		return
	}
	p, _ := holders.Get().(*[]byte)
	if p == nil {
		p = new([]byte)
	}
	*p = b[:c]
	pools[poolIndex(c)].Put(p)
}
